"""python -m bench [--quick] [--only NAME,...] [--runs N] [--markdown PATH]

Expects the stack from `make up` (PostgreSQL, Kafka, the four services, the :3000 gateway); it
starts nothing of its own except scratch databases, a projection runner process and a webhook
receiver, and removes what it made; `recovery` alone starts (and stops) an isolated stack of its own."""

import argparse
import asyncio
import importlib
import time
import traceback
from pathlib import Path

import uvloop

from bench import memory, rebuild
from bench.env import machine
from bench.report import Row, console, markdown_table, print_table, progress

# Run in this order: memory is read last, after the load of the others.
BENCHES = {
    "appends": "bench.appends",
    "http": "bench.http_api",
    "projection": "bench.projection_latency",
    "delivery": "bench.delivery",
    "lanes": "bench.lanes",
    "rebuild": "bench.rebuild",
    "listing": "bench.listing",
    "recovery": "bench.recovery",  # a stack of its own (.local/recovery, ports +1000): faults there
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a small smoke run (seconds per benchmark)")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join([*BENCHES, 'memory'])}")
    p.add_argument("--runs", type=int, default=None, help="runs per figure (median taken); default 3, quick 2")
    p.add_argument(
        "--rebuild-events",
        type=int,
        default=None,
        help="events in the rebuild benchmark's store (default 1,000,000; quick 50,000)",
    )
    p.add_argument("--markdown", type=Path, default=None, help="also write the table and machine as Markdown")
    return p.parse_args()


async def main(args: argparse.Namespace) -> int:
    chosen = [b.strip() for b in args.only.split(",") if b.strip()] or [*BENCHES, "memory"]
    unknown = set(chosen) - {*BENCHES, "memory"}
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    runs = args.runs or (2 if args.quick else 3)
    rebuild.EVENTS = args.rebuild_events
    info = machine()
    console.rule(
        f"Billstream benchmarks{' (quick)' if args.quick else ''}: {runs} runs per figure, "
        f"{info['cpus']} CPUs, {info['memory']}, {info['date']}"
    )
    rss_before = memory.snapshot()
    rows: list[Row] = []
    failed: list[str] = []
    started = time.monotonic()
    for name in [b for b in BENCHES if b in chosen]:
        progress(name, "starting")
        t0 = time.monotonic()
        try:
            module = importlib.import_module(BENCHES[name])
            rows += await module.run(args.quick, runs)
        except Exception:  # noqa: BLE001 - one broken benchmark should not cost the others' figures
            failed.append(name)
            console.print(f"[red]{name} failed:[/]\n{traceback.format_exc()}")
        progress(name, f"done in {time.monotonic() - t0:.0f} s")
    if "memory" in chosen:
        rows += memory.rows(rss_before)
    title = f"Billstream benchmarks, {info['date']} ({time.monotonic() - started:.0f} s)"
    print_table(rows, title)
    if args.markdown:
        machine_lines = "\n".join(f"- {k}: {v}" for k, v in info.items())
        args.markdown.write_text(f"## {title}\n\n{machine_lines}\n\n{markdown_table(rows)}\n")
        console.print(f"wrote {args.markdown}")
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/]")
    return 1 if failed else 0


if __name__ == "__main__":
    arguments = parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        raise SystemExit(runner.run(main(arguments)))
