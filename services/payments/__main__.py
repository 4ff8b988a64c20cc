"""python -m services.payments [serve | projections ... | dead-letters ...]"""

from shared.cli import make_cli

from .service import create_app, service

cli = make_cli(service, create_app)

if __name__ == "__main__":
    cli()
