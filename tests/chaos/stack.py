"""The chaos run's own stack: its own state dir and ports, started and stopped by the project's
scripts in deploy/local, so nothing here can touch the default stack other people are using
(ports 55432, 59092, 3000, 8001-8004, 52525, 58025)."""

import os
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "deploy" / "local"
STATE = Path(os.environ.get("CHAOS_STATE_DIR", ROOT / ".local" / "chaos"))
SERVICES = ("invoicing", "payments", "dunning", "webhooks")
DEFAULT_PORTS = {55432, 59092, 59093, 3000, 8001, 8002, 8003, 8004, 52525, 58025}

# Ports of its own, all below the kernel's ephemeral range (32768 and up): after a test run, the
# default stack's long-lived client connections occupy ports up there, and a server that starts
# later can find its port taken (seen: "could not bind ... 55532"). Shift with CHAOS_PORT_OFFSET.
OFFSET = int(os.environ.get("CHAOS_PORT_OFFSET", "0"))
PORTS = {
    "pg": 25432 + OFFSET,
    "kafka": 29092 + OFFSET,
    "kafka_controller": 29093 + OFFSET,
    "gateway": 3100 + OFFSET,
    "smtp": 22525 + OFFSET,
    "mail_page": 28025 + OFFSET,
    **{svc: 8101 + i + OFFSET for i, svc in enumerate(SERVICES)},
}
assert not DEFAULT_PORTS & set(PORTS.values()), "the chaos stack must not share a port with the default stack"
GATEWAY = f"http://127.0.0.1:{PORTS['gateway']}"


def env() -> dict[str, str]:
    """The environment every deploy/local script and CLI of this stack runs with."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("BILLSTREAM_")}  # no stray wiring
    e.update(
        {
            "BILLSTREAM_ENV": "local",
            "BILLSTREAM_STATE_DIR": str(STATE),
            # The jars only; each stack keeps its own Kafka data and config.
            "BILLSTREAM_KAFKA_LIBS": str(ROOT / ".local" / "kafka-4.1.1" / "libs"),
            "BILLSTREAM_PG_PORT": str(PORTS["pg"]),
            "BILLSTREAM_KAFKA_PORT": str(PORTS["kafka"]),
            "BILLSTREAM_KAFKA_CONTROLLER_PORT": str(PORTS["kafka_controller"]),
            "BILLSTREAM_GATEWAY_PORT": str(PORTS["gateway"]),
            "BILLSTREAM_MAILBOX_SMTP_PORT": str(PORTS["smtp"]),
            "BILLSTREAM_MAILBOX_HTTP_PORT": str(PORTS["mail_page"]),
            # Shorter (documented) retry timings, so "quiet" comes within minutes, not hours: a
            # delivery or e-mail interrupted by a fault is tried again soon.
            "BILLSTREAM_WEBHOOKS_RETRY_SCHEDULE_S": "[2, 5, 10, 20, 40, 60, 120]",
            "BILLSTREAM_WEBHOOKS_EMAIL_RETRY_SCHEDULE_S": "[3, 10, 20, 40, 60]",
            "BILLSTREAM_WEBHOOKS_DELIVERY_TIMEOUT_S": "10",
            "BILLSTREAM_WEBHOOKS_DELIVERY_LEASE_S": "20",
        }
    )
    for svc in SERVICES:
        up, db = svc.upper(), f"billstream_{svc}"
        e[f"BILLSTREAM_{up}_HTTP_PORT"] = str(PORTS[svc])
        e[f"BILLSTREAM_{up}_DATABASE_URL"] = f"postgresql://{db}:{db}@127.0.0.1:{PORTS['pg']}/{db}"
        e[f"BILLSTREAM_{up}_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{PORTS['kafka']}"
    e["BILLSTREAM_INVOICING_PUBLIC_URL"] = e["BILLSTREAM_PAYMENTS_PUBLIC_URL"] = e["BILLSTREAM_WEBHOOKS_PUBLIC_URL"] = (
        f"http://localhost:{PORTS['gateway']}"
    )
    e["BILLSTREAM_WEBHOOKS_SMTP_PORT"] = str(PORTS["smtp"])
    e["BILLSTREAM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{PORTS['kafka']}"  # the demo's (deploy/local/demo.py)
    return e


def script(name: str, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run deploy/local/<name>.sh with this stack's environment."""
    return subprocess.run(
        [str(LOCAL / f"{name}.sh"), *args],
        cwd=ROOT,
        env=env(),
        text=True,
        capture_output=True,
        timeout=timeout,
        check=check,
    )


def up() -> None:
    out = subprocess.run([str(LOCAL / "up.sh")], cwd=ROOT, env=env(), text=True, capture_output=True, timeout=600)
    if out.returncode:
        raise RuntimeError(f"chaos stack did not start:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


def down() -> None:
    subprocess.run([str(LOCAL / "down.sh")], cwd=ROOT, env=env(), text=True, capture_output=True, timeout=300)


def pid_of(name: str) -> int | None:
    """The pid in this stack's own pid file, if that process is alive and is what we think it is
    (a pid file can outlive its process and the number be reused)."""
    try:
        pid = int((STATE / "run" / f"{name}.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None
    expected = f"services.{name}" if name in SERVICES else str(STATE / "kafka-server.properties")
    return pid if expected in cmdline else None


def kill9(name: str) -> bool:
    pid = pid_of(name)
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid):
            break
        time.sleep(0.05)
    # A dead process can stay a zombie for a while (whoever adopted it reaps late), and `kill -0`
    # still finds a zombie: the scripts would say "already running" and not start it. Forget the
    # pid as their own stop does.
    (STATE / "run" / f"{name}.pid").unlink(missing_ok=True)
    return True


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "gone"


def start_until_ready(kind: str, *args: str, deadline_s: float = 180) -> float:
    """Restart the way the scripts do (services.sh start SVC, kafka.sh start, postgres.sh start),
    again if the first try times out (e.g. a service waiting for Kafka); seconds it took."""
    began = time.monotonic()
    while True:
        out = script(kind, "start", *args, check=False)
        if out.returncode == 0:
            return time.monotonic() - began
        if time.monotonic() - began > deadline_s:
            raise RuntimeError(f"{kind} {' '.join(args)} did not come back: {out.stderr[-1500:]}")
        time.sleep(1)
