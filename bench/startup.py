"""Item 6: exec to READY=1 on an empty host, and the share of it spent importing modules."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Section, load_now, ms, verdict
from bench.rig import Rig

TARGET_S = 1.0
IMPORT_PREFIX = "import time:"


def time_to_ready(work: str, python_flags: tuple[str, ...] = ()) -> tuple[float, str]:
    """One daemon start on an empty host with an empty runtime: (seconds to READY=1, its stderr)."""
    with tempfile.TemporaryDirectory(dir=work, prefix="s") as base:
        rig = Rig(Path(base))
        try:
            rig.start_cri()
            rig.start(python_flags)
            return rig.wait_ready().after_s, rig.stderr()
        finally:
            rig.close()


def import_seconds(stderr: str) -> tuple[float, list[tuple[float, str]]]:
    """Total import time from `-X importtime` lines, and the top-level imports by cumulative time."""
    top: list[tuple[float, str]] = []
    for line in stderr.splitlines():
        if not line.startswith(IMPORT_PREFIX) or "cumulative" in line:
            continue
        _self_us, cumulative_us, name = line[len(IMPORT_PREFIX):].split("|", 2)
        if not name.startswith("  "):  # one space after '|' marks a top-level import
            top.append((int(cumulative_us) / 1e6, name.strip()))
    return sum(s for s, _ in top), sorted(top, reverse=True)


def import_self_seconds(stderr: str) -> dict[str, float]:
    """Self time of `-X importtime` lines summed by top-level package (lhsweep, grpc, google, ...)."""
    found: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith(IMPORT_PREFIX) or "cumulative" in line:
            continue
        self_us, _cumulative_us, name = line[len(IMPORT_PREFIX):].split("|", 2)
        package = name.strip().split(".")[0]
        found[package] = found.get(package, 0.0) + int(self_us) / 1e6
    return found


def bare_interpreter_s(runs: int) -> float:
    """Median time of `python -c pass` (the interpreter's own start-up, for scale)."""
    times = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def run(work: str, runs: int) -> Section:
    """Item 6: median exec->READY over `runs` starts, then one `-X importtime` start."""
    load = load_now()
    times = [time_to_ready(work)[0] for _ in range(runs)]
    median = statistics.median(times)
    traced_ready, stderr = time_to_ready(work, ("-X", "importtime"))
    imports, top = import_seconds(stderr)
    bare = bare_interpreter_s(runs)
    section = Section("6. Start-up: exec to READY=1 on an empty host",
                      ["measure", "value", "target", "load"])
    section.rows += [
        [f"exec -> READY=1, median of {runs}", ms(median), f"< {ms(TARGET_S)}: {verdict(median, TARGET_S)}",
         load],
        ["min..max", f"{ms(min(times))}..{ms(max(times))}", "", ""],
        ["imports (one start under -X importtime)",
         f"{ms(imports)} of {ms(traced_ready)} ({imports / traced_ready:.0%})", "", load_now()],
        ["bare interpreter (`python -c pass`), median", ms(bare), "", ""],
    ]
    heaviest = ", ".join(f"{name} {ms(s)}" for s, name in top[:6])
    section.notes += [
        "The daemon is exec'd as `python -m lhsweep.cli daemon` with NOTIFY_SOCKET set to a datagram "
        "socket the bench binds; the clock runs from just before exec to the arrival of READY=1. "
        "READY=1 follows the boot sweep, so this includes one CRI round trip (a real gRPC server "
        "with no pods) and an inventory of an empty host.",
        f"Heaviest top-level imports (cumulative): {heaviest}.",
        "-X importtime slows imports a little; its total is an upper bound of the import share.",
    ]
    return section
