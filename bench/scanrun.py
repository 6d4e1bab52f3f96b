"""One node size measured in a fresh process: inventory+plan times, peak memory (JSON on stdout).

Run by bench.scan as `python -m bench.scanrun TREE MODE RUNS`; a process per size and mode
keeps peak RSS and allocator state of one measurement out of the next.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Optional

from lhsweep.config import Config
from lhsweep.host import HostRoot
from lhsweep.inventory import DmControl, DmsetupDmControl
from lhsweep.model import InstanceManager, RuntimeState, RuntimeView, SweepReport, Verdict
from lhsweep.sweep import scan
from lhsweep.tools import ToolResult, ToolRunner

FAKE_DMSETUP = str(Path(__file__).resolve().parent.parent / "tests" / "fakes" / "dmsetup")
MODES = ("fake-dmsetup", "replayed-dmsetup")


class ReplayRunner(ToolRunner):
    """Answers each command with the output the fake dmsetup gave for it once (no subprocess)."""

    def __init__(self, recorded: dict[tuple[str, ...], ToolResult]) -> None:
        super().__init__(timeout=10.0)
        self.recorded = recorded

    def run(self, argv: list[str] | tuple[str, ...], timeout: Optional[float] = None) -> ToolResult:
        """The recorded result of `argv`."""
        return self.recorded[tuple(argv)]


def dm_control(mode: str) -> DmControl:
    """The fake dmsetup (a subprocess per call), or its recorded answers parsed in-process."""
    real = DmsetupDmControl(dmsetup=FAKE_DMSETUP)
    if mode == "fake-dmsetup":
        return real
    runner = ToolRunner(timeout=600.0)
    recorded: dict[tuple[str, ...], ToolResult] = {
        (FAKE_DMSETUP, cmd): runner.run([FAKE_DMSETUP, cmd]) for cmd in ("info", "table")}
    return DmsetupDmControl(ReplayRunner(recorded), dmsetup=FAKE_DMSETUP)


def one_live_instance_manager() -> RuntimeView:
    """CRI's answer on a node whose instance-manager restarted just now (after the crash)."""
    im = InstanceManager("instance-manager-0123456789abcdef0123456789abcdef", "uid-1",
                         "longhorn-system", "node-1", "sandbox-1", "ready", "container-1",
                         "running", time.time_ns())
    return RuntimeView(RuntimeState.KNOWN, "bench", instance_managers=(im,))


def measure(tree: str, mode: str, runs: int) -> dict[str, object]:
    """Median and spread of `runs` scans, one more under tracemalloc, and the process's peak RSS."""
    os.environ["LHSWEEP_FAKE_ROOT"] = tree
    host, config, view = HostRoot(tree), Config(sweep_grace_period=0), one_live_instance_manager()
    control = dm_control(mode)
    times, report = [], None
    for _ in range(runs):
        started = time.perf_counter()
        report = scan(config, host, query=lambda _c, _h: view, dm_control=control)
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    scan(config, host, query=lambda _c, _h: view, dm_control=control)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report is not None
    return {"times_s": times, "median_s": statistics.median(times), "traced_peak_bytes": peak,
            "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "verdicts": verdict_counts(report), "problems": list(report.problems)}


def verdict_counts(report: SweepReport) -> dict[str, int]:
    """How many entries got each verdict (a sanity check that the plan saw the whole node)."""
    counts = {v.value: 0 for v in Verdict}
    for entry in report.plan.entries:
        counts[entry.verdict.value] += 1
    return counts


def main(argv: list[str]) -> int:
    """python -m bench.scanrun TREE MODE RUNS."""
    tree, mode, runs = argv[0], argv[1], int(argv[2])
    if mode not in MODES:
        print(f"bench.scanrun: mode must be one of {', '.join(MODES)}", file=sys.stderr)
        return 2
    json.dump(measure(tree, mode, runs), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
