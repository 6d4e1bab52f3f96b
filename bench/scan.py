"""Item 1: inventory+plan cost and peak memory against node size (synthetic host trees)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.nodes import NodeShape, build_node
from bench.report import Section, load_now, ms, verdict
from bench.scanrun import MODES

# Targets from the issue: inventory+plan of 1,000 volumes under 100 ms, 10,000 under 1 s.
TARGETS_S = {1000: 0.1, 10000: 1.0}
HEADERS = ["volumes", "dm devices", "dm read through", "median", "per volume", "min..max",
           "peak traced", "max RSS", "stale found", "target", "load"]


@dataclass(frozen=True)
class Measured:
    """One size in one mode, as bench.scanrun reported it."""

    shape: NodeShape
    mode: str
    result: dict[str, Any]
    load: str

    def row(self) -> list[str]:
        """The table row."""
        times = self.result["times_s"]
        median = float(self.result["median_s"])
        limit = TARGETS_S.get(self.shape.volumes)
        target = f"< {ms(limit)}: {verdict(median, limit)}" if limit and self.mode != MODES[0] else ""
        return [f"{self.shape.volumes:,}", f"{self.shape.dm_devices:,}", self.mode, ms(median),
                f"{median / self.shape.volumes * 1e6:.0f} us", f"{ms(min(times))}..{ms(max(times))}",
                f"{self.result['traced_peak_bytes'] / 2**20:.1f} MiB",
                f"{self.result['maxrss_kib'] / 1024:.0f} MiB", str(self.result["verdicts"]["stale"]),
                target, self.load]


def measure_size(work: str, volumes: int, runs: int) -> list[Measured]:
    """Build a node of `volumes` volumes under `work`, then measure it in each mode."""
    root = os.path.join(work, f"node-{volumes}")
    started = time.monotonic()
    shape = build_node(root, volumes)
    print(f"  built {volumes:,} volumes in {time.monotonic() - started:.1f} s", file=sys.stderr)
    measured = []
    for mode in MODES:
        load = load_now()
        out = subprocess.run([sys.executable, "-m", "bench.scanrun", root, mode, str(runs)],
                             capture_output=True, text=True, check=True).stdout
        measured.append(Measured(shape, mode, json.loads(out), load))
        print(f"  {volumes:,} volumes, {mode}: {ms(measured[-1].result['median_s'])}", file=sys.stderr)
    return measured


def run(work: str, sizes: list[int], runs: int) -> Section:
    """Item 1 for each size; a fresh measuring process per size and mode."""
    section = Section("1. Scan and plan cost against node size", HEADERS)
    for volumes in sizes:
        for measured in measure_size(work, volumes, runs):
            section.rows.append(measured.row())
            problems = measured.result["problems"]
            if problems:
                section.notes.append(f"{volumes} volumes, {measured.mode}: inventory problems: "
                                     f"{problems[:3]}")
    section.notes += [
        f"inventory+plan is `lhsweep.sweep.scan` with a fixed CRI answer (one instance-manager that "
        f"restarted after the crash), median of {runs} runs in one process; every size is a fresh "
        "process. The tree is on tmpfs (/dev/shm), like sysfs in memory.",
        "Each node: the volumes (1 in 10 with its target gone: the stale work; 1 in 25 encrypted), "
        "one foreign dm device per 10 volumes (LVM, or a uuid-less linear on a loop device), a V1 "
        "encrypted volume and a multipath map.",
        "`fake-dmsetup`: the dm tables come from tests/fakes/dmsetup, a Python subprocess that "
        "loads the whole tree's state (`dmsetup info` + `dmsetup table`): the fake's cost, not "
        "lhsweep's. `replayed-dmsetup`: the same two outputs recorded once and parsed in-process by "
        "the production DmsetupDmControl: lhsweep's own cost. Targets apply to that row.",
        "peak traced: tracemalloc's peak over one more scan; max RSS: the measuring process's "
        "ru_maxrss (interpreter and imports included).",
    ]
    return section
