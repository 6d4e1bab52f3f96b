"""Item 7: a burst of pod-directory create/delete events, with a real crash in the middle of it."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from bench.report import Section, load_now
from bench.rig import PODS, Rig, sample
from tests.hosttree import HostTree

QUIET_S = 3.0
CONFIG = {"sweep": "grace_period = 0"}


def sweeps_seen(rig: Rig) -> list[int]:
    """Sweep numbers of the STATUS lines received so far."""
    numbers = []
    for _, text in rig.messages:
        for line in text.splitlines():
            if line.startswith("STATUS=sweep "):
                numbers.append(int(line.split()[1].rstrip(":")))
    return numbers


def listen(rig: Rig, stop: threading.Event) -> threading.Thread:
    """A thread timestamping notify messages as they arrive (the burst keeps the main thread busy)."""

    def read() -> None:
        rig.notify.settimeout(0.1)
        while not stop.is_set():
            try:
                rig.messages.append((time.monotonic(), rig.notify.recv(65536).decode()))
            except socket.timeout:
                continue

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def wait_quiet(rig: Rig, since: float, limit_s: float) -> float:
    """Wait for a sweep that ended after `since`, then for QUIET_S without messages; the last one's time.

    Gives up after `limit_s` (the end state then shows what the daemon missed).
    """
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        swept = any(t > since and "STATUS=sweep " in m for t, m in rig.messages)
        if swept and time.monotonic() - rig.messages[-1][0] >= QUIET_S:
            break
        time.sleep(0.1)
    return rig.messages[-1][0]


def burst(pods: str, events: int, at_half: object) -> float:
    """events/2 pod directories created, then deleted; `at_half()` runs half-way through the creates."""
    pairs = events // 2
    started = time.monotonic()
    for i in range(pairs):
        os.mkdir(f"{pods}/storm-{i}")
        if i == pairs // 2:
            at_half()  # type: ignore[operator]
    for i in range(pairs):
        os.rmdir(f"{pods}/storm-{i}")
    return time.monotonic() - started


def run(work: str, events: int) -> Section:
    """Item 7: sweeps run, daemon CPU, and whether the end state is right."""
    section = Section(f"7. Event storm: {events:,} pod-directory events in a burst",
                      ["measure", "value", "load"])
    with tempfile.TemporaryDirectory(dir=work, prefix="e") as base:
        rig = Rig(Path(base), CONFIG)
        try:
            _, pod_dir = rig.add_im()
            volume = rig.tree.add_longhorn_volume("pvc-storm")
            lvm = rig.tree.add_lvm()
            rig.start_cri()
            rig.start()
            rig.wait_ready()
            before = sample(rig.pid)
            load = load_now()
            stop = threading.Event()
            listener = listen(rig, stop)
            took = burst(rig.tree.p(PODS), events, lambda: rig.crash_im(pod_dir))
            last = wait_quiet(rig, since=before.at + took, limit_s=120.0)
            stop.set()
            listener.join()
            after = sample(rig.pid)
            devices = HostTree(rig.tree.root).state["devices"]
            swept = [n for n in sweeps_seen(rig) if n > 1]
            right = {
                "stale dm removed": volume.name not in devices,
                "stale node removed": not os.path.exists(rig.tree.p(f"/dev/longhorn/{volume.name}")),
                "NVMe controller disconnected": HostTree(rig.tree.root).subsystem_of(volume.nqn) is None,
                "foreign LVM kept": lvm.name in devices,
                "last sweep saw no live instance-manager": "0 live instance-managers" in rig.state().get(
                    "status", ""),
            }
        finally:
            rig.close()
    section.rows += [
        ["burst written in", f"{took:.2f} s", load],
        ["sweeps after the boot sweep", str(len(swept)), ""],
        ["daemon CPU from the burst's start to quiet", f"{after.cpu_s - before.cpu_s:.2f} s", load_now()],
        ["last sweep finished after the burst's start", f"{last - before.at:.2f} s", ""],
        ["final state right", "yes" if all(right.values()) else
         "NO: " + ", ".join(k for k, ok in right.items() if not ok), ""],
    ]
    section.notes += [
        f"{events // 2:,} directories created then deleted in <kubelet root>/pods as fast as Python "
        "can; half-way through the creates the instance-manager crashes (CRI reports its container "
        "exited and sends CONTAINER_STOPPED_EVENT; its pod directory goes), leaving a volume "
        "(dm + /dev/longhorn node + NVMe controller) stale next to a foreign LVM device.",
        "Checked at the end: " + "; ".join(f"{k}: {'yes' if ok else 'NO'}" for k, ok in right.items()) + ".",
        f"Defaults (debounce 0.25 s) except sweep.grace_period = 0; quiet = a sweep ended after "
        f"the burst, then no notify message for {QUIET_S:.0f} s.",
    ]
    return section
