"""Item 5: what `lhsweep daemon` costs with nothing to do (RSS, CPU seconds, wake-ups per minute)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.report import Section, load_now
from bench.rig import UNIT_WATCHDOG_USEC, ProcSample, Rig, sample

RSS_TARGET_MIB = 40.0
SETTLE_S = 2.0
# The runtime modes: containerd 1.7+/CRI-O stream container events; containerd 1.6 answers
# UNIMPLEMENTED and the daemon polls every cri.poll_interval (default 10 s).
MODES = {"CRI event stream": {}, "CRI polling (no event stream)":
         {"GetContainerEvents": {"abort": "UNIMPLEMENTED"}}}


def observe(work: str, seconds: float,
            behaviour: dict[str, dict[str, str]]) -> tuple[ProcSample, ProcSample]:
    """Start the daemon (shipped defaults, empty host); its counters after READY and `seconds` later."""
    with tempfile.TemporaryDirectory(dir=work, prefix="i") as base:
        rig = Rig(Path(base))
        try:
            rig.cri_state["behaviour"] = behaviour
            rig.start_cri()
            rig.start(WATCHDOG_USEC=UNIT_WATCHDOG_USEC)
            rig.wait_ready()
            time.sleep(min(SETTLE_S, seconds))  # the boot sweep's threads finish before counting
            first = sample(rig.pid)
            time.sleep(seconds)
            return first, sample(rig.pid)
        finally:
            rig.close()


def run(work: str, seconds: float) -> Section:
    """Item 5 in each runtime mode."""
    section = Section(f"5. Idle footprint over {seconds:.0f} s",
                      ["runtime", "RSS", "peak RSS", "RSS target", "CPU used", "wake-ups/min",
                       "threads", "load"])
    for mode, behaviour in MODES.items():
        load = load_now()
        first, last = observe(work, seconds, behaviour)
        minutes = (last.at - first.at) / 60
        rss_mib = last.rss_kib / 1024
        section.rows.append([
            mode, f"{rss_mib:.1f} MiB", f"{last.hwm_kib / 1024:.1f} MiB",
            f"< {RSS_TARGET_MIB:.0f} MiB: {'met' if rss_mib < RSS_TARGET_MIB else 'MISSED'}",
            f"{last.cpu_s - first.cpu_s:.2f} s", f"{(last.switches - first.switches) / minutes:.0f}",
            str(last.threads), load,
        ])
    section.notes += [
        "The daemon runs with the shipped defaults (resync 300 s, debounce 0.25 s, CRI poll 10 s) "
        f"and WATCHDOG_USEC={UNIT_WATCHDOG_USEC} as the unit's WatchdogSec=60s sets it (a ping "
        "every 30 s), on an empty host with a real gRPC CRI server that has no pods.",
        f"Counters start {min(SETTLE_S, seconds):.0f} s after READY=1. CPU: utime+stime of all threads "
        "(/proc/PID/stat). Wake-ups: voluntary+involuntary context switches summed over "
        "/proc/PID/task/*/status, per minute.",
    ]
    return section
