"""Templates (jinja2, HTML and plain text) and money and dates formatted for a locale (babel)."""

from datetime import date
from pathlib import Path

from babel.core import Locale, UnknownLocaleError
from babel.dates import format_date
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),  # customer names and item descriptions are data
    undefined=StrictUndefined,  # a template asking for a missing value is a bug, not a blank
    trim_blocks=True,
    lstrip_blocks=True,
)


def locale_or_default(value: str | None, default: str) -> str:
    for candidate in (value, default, "en"):
        if not candidate:
            continue
        try:
            return str(Locale.parse(candidate.replace("-", "_")))
        except (ValueError, UnknownLocaleError):
            continue
    return "en"


def long_date(value: str | date | None, locale: str) -> str | None:
    if not value:
        return None
    day = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    return format_date(day, format="long", locale=locale)


def render(kind: str, context: dict) -> tuple[str, str, str]:
    """(subject, text, html) for one kind of e-mail."""
    subject = _env.get_template(f"{kind}.subject.txt").render(**context).strip()
    text = _env.get_template(f"{kind}.txt").render(**context)
    html = _env.get_template(f"{kind}.html").render(**context)
    return subject, text, html
