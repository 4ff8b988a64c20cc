"""Run a piece of Billstream in its own OS process, so a test can kill it like a crash would."""

import asyncio
import json
import os
import random
import socket
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port for a server a test starts next. Not bind(0): that hands out a port from the
    kernel's ephemeral range, where any outgoing connection (Kafka, PostgreSQL, HTTP clients, other
    tests) may take it before the child binds it. A random port below that range is never handed
    out implicitly; the bind checks that nobody listens there now."""
    top = min(_ephemeral_low(), 32768)
    while True:
        port = random.randrange(20000, top)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


async def spawn(module: str, *args: str, failpoints: str = "") -> asyncio.subprocess.Process:
    """The child's output goes to a file (`proc.log_path`, read it with `output(proc)`), never to a
    pipe: nobody reads a pipe while the child runs, and a full pipe (64 KiB of logs) blocks it."""
    env = {**os.environ, "BILLSTREAM_FAILPOINTS": failpoints, "PYTHONPATH": str(ROOT)}
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"{module.rsplit('.', 1)[-1]}-{uuid.uuid4().hex[:10]}.log"
    with open(log_path, "ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    proc.log_path = log_path
    return proc


def output(proc: asyncio.subprocess.Process, tail: int = 3000) -> str:
    """The end of what a spawned child wrote, for an assertion message."""
    return proc.log_path.read_text(errors="replace")[-tail:]


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
