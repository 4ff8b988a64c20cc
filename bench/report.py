"""The results table: each figure beside the baseline measured in the same run, their ratio, and
the target where the issue sets one. Printed with rich; also rendered as Markdown for RESULTS.md."""

import math
import sys
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from bench.stats import ratio

# A wide table even in a log file or CI output, where rich would default to 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 170)


@dataclass
class Row:
    bench: str
    figure: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_what: str = ""
    target: str = ""
    met: bool | None = None  # None: no target for this figure

    @property
    def ratio(self) -> float:
        return ratio(self.value, self.baseline) if self.baseline is not None else math.nan


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _cells(row: Row) -> list[str]:
    met = "" if row.met is None else ("met" if row.met else "MISSED")
    return [
        row.bench,
        row.figure,
        fmt(row.value, row.unit),
        row.baseline_what or "—",
        fmt(row.baseline, row.unit) if row.baseline is not None else "—",
        "—" if math.isnan(row.ratio) else f"{row.ratio:.2f}×",
        row.target,
        met,
    ]


HEADERS = ["bench", "figure", "value", "baseline", "baseline value", "ratio", "target", ""]


def print_table(rows: list[Row], title: str) -> None:
    table = Table(title=title, show_lines=False)
    for h in HEADERS:
        table.add_column(h, overflow="fold")
    for row in rows:
        cells = _cells(row)
        if row.met is not None:
            cells[-1] = "[green]met[/]" if row.met else "[red]MISSED[/]"
        table.add_row(*cells)
    console.print(table)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join([*HEADERS[:-1], "met"]) + " |", "|" + "---|" * len(HEADERS)]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
    return "\n".join(lines)


def progress(bench: str, message: str) -> None:
    console.log(f"[bold cyan]{bench}[/] {message}")
