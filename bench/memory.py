"""(7) Peak resident memory (VmHWM) of each service after the load, beside its resident size
(VmRSS) when the bench started. VmHWM is the peak since the process started, so it includes
whatever ran before the bench; the ratio shows how far the load pushed it."""

import math

from bench.env import SERVICES, proc_status_kib, service_pid
from bench.report import Row

Snapshot = dict[str, tuple[int | None, int | None]]  # service → (pid, VmRSS KiB)


def snapshot() -> Snapshot:
    return {s: (pid, proc_status_kib(pid, "VmRSS") if pid else None) for s in SERVICES for pid in [service_pid(s)]}


def rows(before: Snapshot) -> list[Row]:
    out = []
    for service in SERVICES:
        pid = service_pid(service)
        peak = proc_status_kib(pid, "VmHWM") if pid else None
        if peak is None:
            out.append(Row("memory", f"{service} peak RSS: not running", math.nan, "MiB"))
            continue
        old_pid, rss = before.get(service, (None, None))
        if old_pid != pid:  # restarted during the bench: its start-time RSS is another process's
            out.append(Row("memory", f"{service} peak RSS (VmHWM), restarted during the bench", peak / 1024, "MiB"))
            continue
        out.append(
            Row(
                "memory",
                f"{service} peak RSS (VmHWM)",
                peak / 1024,
                "MiB",
                rss / 1024 if rss else None,
                "RSS at bench start",
            )
        )
    return out
