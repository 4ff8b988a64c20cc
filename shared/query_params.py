"""List endpoints refuse query parameters they do not know instead of ignoring them: `?stauts=PAID`
is a typo to report (400 `parameter_unknown`, as invoicing's lists answer), not a request for
everything."""

from collections.abc import Iterable, Iterator

from fastapi import Request
from fastapi.dependencies.models import Dependant

from shared.errors import Refused


def refuse_unknown(names: Iterable[str], known: set[str]) -> None:
    for name in names:
        if name not in known:
            allowed = f"Use one of: {', '.join(sorted(known))}." if known else "This list takes none."
            raise Refused("parameter_unknown", f"Unknown list parameter '{name}'. {allowed}", field=name)


async def declared_only(request: Request) -> None:
    """A FastAPI dependency: the query parameters the route declares (by alias), no others."""
    refuse_unknown(request.query_params.keys(), set(_declared(request.scope["route"].dependant)))


def _declared(dependant: Dependant) -> Iterator[str]:
    yield from (p.alias for p in dependant.query_params)
    for sub in dependant.dependencies:
        yield from _declared(sub)
