"""The daemon rig the benchmarks drive (tests/daemonrig.py) and the /proc counters they read off it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from tests.daemonrig import PODS, Rig

# The shipped unit's WatchdogSec=60s: systemd passes WATCHDOG_USEC and we ping every 30 s.
UNIT_WATCHDOG_USEC = "60000000"
__all__ = ["PODS", "UNIT_WATCHDOG_USEC", "ProcSample", "Rig", "sample"]


@dataclass(frozen=True)
class ProcSample:
    """CPU and wake-up counters of one process (all its threads) at one moment."""

    at: float
    cpu_s: float
    switches: int
    rss_kib: int
    hwm_kib: int
    threads: int


def _status_fields(path: str) -> dict[str, str]:
    """A /proc/.../status file as a dict (missing when the thread is gone: empty)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return dict(line.split(":", 1) for line in handle if ":" in line)
    except OSError:
        return {}


def sample(pid: int) -> ProcSample:
    """utime+stime (all threads), voluntary+involuntary context switches of every live thread, RSS."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)
    switches = 0
    tasks = os.listdir(f"/proc/{pid}/task")
    for task in tasks:
        status = _status_fields(f"/proc/{pid}/task/{task}/status")
        switches += sum(int(status.get(k, "0")) for k in ("voluntary_ctxt_switches",
                                                          "nonvoluntary_ctxt_switches"))
    status = _status_fields(f"/proc/{pid}/status")
    return ProcSample(time.monotonic(), cpu, switches, int(status["VmRSS"].split()[0]),
                      int(status["VmHWM"].split()[0]), len(tasks))
