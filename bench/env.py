"""Where the stack is (the same defaults as deploy/local/env.sh), scratch databases the bench
creates and drops, bench tenants, and the machine description for RESULTS.md."""

import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from shared.db import create_pool, migrate

ROOT = Path(__file__).resolve().parents[1]
ADMIN_DSN = os.environ.get("BILLSTREAM_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:55432/postgres")
KAFKA = os.environ.get("BILLSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:59092")
GATEWAY = os.environ.get("BILLSTREAM_GATEWAY_URL", "http://127.0.0.1:3000")
RUN_DIR = Path(os.environ.get("BILLSTREAM_STATE_DIR", ROOT / ".local")) / "run"
SERVICES = ("invoicing", "payments", "dunning", "webhooks")
INVOICING_MIGRATIONS = ROOT / "services" / "invoicing" / "migrations"


def dsn_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


@asynccontextmanager
async def scratch_database(*migration_dirs: Path) -> AsyncIterator[str]:
    """A fresh database with the core (and the given) migrations; dropped afterwards."""
    name = f"bs_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = dsn_for(name)
        await migrate(dsn, *migration_dirs)
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def scratch_pool(*migration_dirs: Path, max_size: int = 20) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    async with scratch_database(*migration_dirs) as dsn:
        pool = await create_pool(dsn, max_size=max_size)
        try:
            yield dsn, pool
        finally:
            await pool.close()


def create_tenant(label: str) -> dict:
    """A tenant and API key through the invoicing CLI, as an operator would make one."""
    out = subprocess.run(
        [sys.executable, "-m", "services.invoicing", "tenants", "create", "--name", f"bench {label}", "--json"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def wait_until_key_active(key: str, paths: tuple[str, ...] = ("/api/invoices",), timeout: float = 60) -> None:
    """Keys reach each service through billing.tenants; wait until the ones used know it."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=GATEWAY, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        for path in paths:
            while (status := client.get(path, params={"limit": 1}).status_code) != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"GET {path} still answers {status}: key not active or service down")
                time.sleep(0.2)


def service_pid(service: str) -> int | None:
    try:
        return int((RUN_DIR / f"{service}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far (/proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kib(pid: int, field: str) -> int | None:
    """A field such as VmHWM or VmRSS from /proc/<pid>/status, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(
        next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
