"""(7) Peak resident memory (VmHWM) of each service after the load, beside its resident size
(VmRSS) when the bench started. VmHWM is the peak since the process started, so it includes
whatever ran before the bench; the ratio shows how far the load pushed it."""

from bench.env import SERVICES, proc_status_kib, service_pid
from bench.report import Row


def snapshot() -> dict[str, int | None]:
    return {s: proc_status_kib(pid, "VmRSS") if (pid := service_pid(s)) else None for s in SERVICES}


def rows(rss_before: dict[str, int | None]) -> list[Row]:
    out = []
    for service in SERVICES:
        pid = service_pid(service)
        peak = proc_status_kib(pid, "VmHWM") if pid else None
        if peak is None:
            continue
        before = rss_before.get(service)
        out.append(Row("memory", f"{service} peak RSS (VmHWM)", peak / 1024, "MiB",
                       before / 1024 if before else None, "RSS at bench start"))
    return out
