"""Run a piece of Billstream in its own OS process, so a test can kill it like a crash would."""

import asyncio
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def spawn(module: str, *args: str, failpoints: str = "") -> asyncio.subprocess.Process:
    env = {**os.environ, "BILLSTREAM_FAILPOINTS": failpoints, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


def json_log_lines(path: Path) -> list[dict]:
    """The JSON lines of a service's log (tracebacks and other text skipped)."""
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass
    return lines
