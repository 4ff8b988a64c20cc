"""A throwaway PostgreSQL cluster of a test's own (initdb into a temporary directory, a free
port), so the test can stop and restart it: the shared server on :55432 is never touched.
As root, the server runs as the postgres user, as deploy/local/postgres.sh does."""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support import processes


def _bin(tool: str) -> str:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name))
    if not dirs:
        raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql (deploy/local/postgres.sh installs them)")
    return f"{dirs[-1]}/{tool}"


def _free_port() -> int:
    return processes.free_port()  # below the ephemeral range: see there


class PrivateCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bs-pg-", dir="/var/tmp"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(
            _bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"
        )

    def start(self) -> None:
        self._run(
            _bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off",
        )

    def stop(self, mode: str = "immediate") -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-w", "stop", "-m", mode)

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)
