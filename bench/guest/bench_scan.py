"""Guest benchmark, items 2 and 3: lhsweep's scan against the shell runbook, then removal throughput.

Facts: device counts, runbook and lhsweep scan times (medians), then a plain `dmsetup remove` +
`rm` loop over half the stale volumes against one `lhsweep sweep` over the other half, and the
kernel's own cost: DM_DEV_REMOVE ioctls alone, in one process, over a further set.
"""

from __future__ import annotations

import fcntl
import json
import os
import statistics
import subprocess
import time
from typing import Any, Callable

from lhvm import nvmet, runtime, volumes
from lhvm.observe import Facts
from lhvm.proc import run, sh, wait_for

from lhsweep.inventory.dmioctl import (
    DM_DEV_REMOVE_CMD,
    HEADER,
    IoctlDmControl,
    encode_request,
    request_number,
)
from lhsweep.tools import ToolRunner

CONFIG = "/etc/lhsweep/lhsweep.toml"


def write_config(text: str) -> None:
    """lhsweep's config file in the guest."""
    os.makedirs(os.path.dirname(CONFIG), exist_ok=True)
    with open(CONFIG, "w") as handle:
        handle.write(text)


def timed(action: Callable[[], object]) -> float:
    """Seconds `action` took."""
    started = time.monotonic()
    action()
    return time.monotonic() - started


def median_time(runs: int, action: Callable[[], object]) -> tuple[float, list[float]]:
    """Median and all of `runs` timings of `action`."""
    times = [timed(action) for _ in range(runs)]
    return statistics.median(times), times


def shell(script: str, timeout: float = 600.0) -> str:
    """Run a shell script; its stdout (raises on failure)."""
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                          timeout=timeout).stdout


def many_namespaces(nqn: str, count: int, size_mib: int = 8) -> list[str]:
    """One exported Longhorn subsystem with `count` namespaces, connected; the heads, in nsid order.

    One NVMe/TCP connection instead of `count` keeps the set-up affordable under emulation;
    each dm device still sits on a namespace head of its own. Namespaces after the first are
    backed by plain files (nvmet's file backend), not loop devices: a V2 node has no loop device
    per volume, and every re-check before a removal resolves each loop's backing file.
    """
    target = nvmet.export(nqn, size_mib)
    subsystem = f"{nvmet.CONFIGFS}/subsystems/{nqn}"
    for nsid in range(2, count + 1):
        backing = nvmet.sparse_file(f"{nqn.rsplit(':', 1)[-1]}-ns{nsid}", size_mib)
        os.mkdir(f"{subsystem}/namespaces/{nsid}")
        with open(f"{subsystem}/namespaces/{nsid}/device_path", "w") as handle:
            handle.write(backing)
        with open(f"{subsystem}/namespaces/{nsid}/enable", "w") as handle:
            handle.write("1")
    nvmet.connect(target.nqn, ctrl_loss_tmo=30)
    wait_for(f"{count} namespace heads", lambda: len(nvmet.heads(nqn)) >= count or None, timeout=300)
    return sorted(nvmet.heads(nqn), key=lambda h: int(h.rsplit("n", 1)[1]))


def engine_volumes(prefix: str, count: int, size_mib: int = 8) -> list[str]:
    """`count` V2 volumes as Longhorn makes them, named <prefix>-<i>: a subsystem each (its engine's
    NQN, one file-backed namespace), a controller each, a dm linear and a /dev/longhorn node.

    The controllers are made by writing Longhorn's connect options to /dev/nvme-fabrics, as
    `nvme connect` does, without a process per volume (affordable under emulation).
    """
    names = [f"{prefix}-{i:03d}" for i in range(count)]
    for name in names:
        nqn = nvmet.engine_nqn(name)
        nvmet.add_subsystem(nqn, nvmet.sparse_file(name, size_mib))
        with open("/dev/nvme-fabrics", "w") as fabrics:
            fabrics.write(f"transport=tcp,traddr={nvmet.ADDRESS},trsvcid={nvmet.SERVICE},nqn={nqn},"
                          "ctrl_loss_tmo=30,keep_alive_tmo=5,reconnect_delay=2")
    for name in names:
        nqn = nvmet.engine_nqn(name)
        head = wait_for(f"the namespace head of {nqn}", lambda q=nqn: (nvmet.heads(q) or [None])[0],
                        timeout=120)
        volumes.make_node(name, volumes.dm_linear(name, f"/dev/{head}"))
    return names


def disconnect(names: list[str]) -> None:
    """Delete the controllers of the volumes `names` (through sysfs, as `nvme disconnect` does)."""
    for name in names:
        for controller in nvmet.controllers(nvmet.engine_nqn(name)):
            with open(f"/sys/class/nvme/{controller}/delete_controller", "w") as handle:
                handle.write("1")


def volumes_on(heads: list[str], prefix: str) -> list[str]:
    """A dm linear device and a /dev/longhorn node per head, named <prefix>-<i>; the names."""
    names = []
    for i, head in enumerate(heads):
        name = f"{prefix}-{i:03d}"
        volumes.make_node(name, volumes.dm_linear(name, f"/dev/{head}"))
        names.append(name)
    return names


def dm_count() -> int:
    """How many dm devices exist."""
    out = sh("dmsetup", "ls").strip()
    return 0 if not out or out.startswith("No devices") else len(out.splitlines())


VOLUMES = 200
PROFILED_VOLUMES = 20
FLOOR_VOLUMES = 20
HELPER_VOLUMES = 20
RUNS = 3
FLOOR_NQN = nvmet.engine_nqn("pvc-floor")
HELPER_NQN = nvmet.engine_nqn("pvc-helper")
# What an operator (or upstream's pre-stop script) runs: list, then info and table per device.
RUNBOOK = """
for name in $(dmsetup ls | cut -f1); do
  dmsetup info "$name" >/dev/null
  dmsetup table "$name" >/dev/null
done
ls /dev/longhorn >/dev/null
"""
PLAIN_REMOVE = 'for name in {names}; do dmsetup remove "$name" && rm -f "/dev/longhorn/$name"; done'


def lhsweep(*args: str, profile: str = "") -> dict[str, Any]:
    """`lhsweep <args> --json` as the package installed it (under cProfile to `profile`); its report."""
    wrap = ["python3", "-m", "cProfile", "-o", profile] if profile else []
    done = subprocess.run([*wrap, "/usr/bin/lhsweep", *args, "--json"], capture_output=True, text=True,
                          timeout=900, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"lhsweep {' '.join(args)}: exit {done.returncode}: {done.stderr[-500:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def import_trace(*args: str) -> str:
    """The `-X importtime` lines of one `lhsweep <args> --json` as installed (its stderr)."""
    done = subprocess.run(["python3", "-X", "importtime", "/usr/bin/lhsweep", *args, "--json"],
                          capture_output=True, text=True, timeout=900, check=False)
    return done.stderr


def kernel_removals(names: list[str]) -> float:
    """Seconds for DM_DEV_REMOVE of each of `names` in this process: no re-check, lock, node or helper.

    The kernel's own cost of a removal, which neither dmsetup nor lhsweep can go below.
    """
    fd = os.open("/dev/mapper/control", os.O_RDWR | os.O_CLOEXEC)
    try:
        started = time.monotonic()
        for name in names:
            fcntl.ioctl(fd, request_number(DM_DEV_REMOVE_CMD), bytearray(encode_request(HEADER.size, name)))
        return time.monotonic() - started
    finally:
        os.close(fd)


def helper_removals(names: list[str]) -> list[float]:
    """Seconds of each DM_DEV_REMOVE of `names` through lhsweep's kernel-call helper, in order.

    The production call (IoctlDmControl.remove, ToolRunner.call_helper) without the re-check and
    locks around it: the first includes the helper's start, the rest are its round trips.
    """
    runner, control = ToolRunner(timeout=60.0), IoctlDmControl("/dev/mapper/control")
    seconds = []
    try:
        for name in names:
            result = control.remove(name, runner)
            if not result.ok:
                raise RuntimeError(f"helper removal of {name}: {result.summary()}")
            seconds.append(result.duration_s)
    finally:
        runner.close_helper()
    return seconds


def action_seconds(report: dict[str, Any]) -> dict[str, list[float]]:
    """Durations of the report's removed actions (lock, re-check and removal each), by kind."""
    found: dict[str, list[float]] = {}
    for action in report["actions"]:
        if action["result"] == "removed":
            found.setdefault(action["kind"], []).append(action["duration_s"])
    return found


def main() -> None:
    """Set up, measure, record."""
    facts = Facts()
    run("systemctl", "stop", "lhsweep.service", timeout=120)
    # The runtime named, as on a node without kubelet's pods directory (no kubelet runs here).
    write_config('[sweep]\ngrace_period = 0\n[cri]\nendpoints = ["unix:///run/containerd/containerd.sock"]\n')
    runtime.start_containerd()  # a known runtime with no instance-manager: every volume is stale
    nvmet.load_modules()
    facts["setup_s"] = timed(lambda: facts.values.update(names=engine_volumes("pvc-b", VOLUMES)))
    names = facts.values["names"]
    volumes.make_lvm()
    facts["dm_devices"] = dm_count()
    facts["runbook_s"], facts["runbook_runs"] = median_time(RUNS, lambda: shell(RUNBOOK))
    facts["lhsweep_scan_s"], facts["lhsweep_scan_runs"] = median_time(RUNS, lambda: lhsweep("scan"))
    report = lhsweep("scan")
    facts["scan_verdicts"] = _verdicts(report)
    # Where the cold start goes: one scan under -X importtime, one under cProfile.
    facts["scan_importtime"] = import_trace("scan")
    lhsweep("scan", profile=os.path.join(facts.directory, "scan.prof"))
    facts["lhsweep_scan_in_process_s"] = report["duration_s"]
    plain = names[0::2]
    facts["plain_count"] = len(plain)
    facts["plain_remove_s"] = timed(lambda: shell(PLAIN_REMOVE.format(names=" ".join(plain))))
    disconnect(plain)  # untimed: the loop leaves its volumes' controllers, the sweep must not count them
    swept: dict[str, Any] = {}
    facts["lhsweep_count"] = len(names) - len(plain)
    facts["lhsweep_sweep_s"] = timed(lambda: swept.update(lhsweep("sweep")))
    facts["sweep_outcomes"] = _outcomes(swept)
    facts["sweep_action_s"] = sum(a["duration_s"] for a in swept["actions"])
    facts["action_runs"] = action_seconds(swept)
    facts["dm_left"] = dm_count()
    # The profile comes from a sweep of its own (cProfile slows the Python side several times).
    engine_volumes("pvc-p", PROFILED_VOLUMES)
    facts["profiled_count"] = PROFILED_VOLUMES
    profiled = lhsweep("sweep", profile=os.path.join(facts.directory, "sweep.prof"))
    facts["profiled_outcomes"] = _outcomes(profiled)
    floor = volumes_on(many_namespaces(FLOOR_NQN, FLOOR_VOLUMES), "pvc-k")
    facts["floor_count"] = len(floor)
    facts["kernel_remove_s"] = kernel_removals(floor)  # an ioctl that fails raises: all went
    # udev's part of the same removals (its rules run per remove event; dmsetup waits for them).
    facts["udev_settle_s"] = timed(lambda: sh("udevadm", "settle", "--timeout=600", timeout=660))
    helper = volumes_on(many_namespaces(HELPER_NQN, HELPER_VOLUMES), "pvc-h")
    facts["helper_runs"] = helper_removals(helper)
    # The interpreter's own start, which every `lhsweep` command and every helper pays first.
    facts["python_pass_s"], _ = median_time(RUNS, lambda: sh("python3", "-c", "pass"))
    facts["python_isolated_pass_s"], _ = median_time(
        RUNS, lambda: sh("python3", "-I", "-S", "-c", "pass"))


def _verdicts(report: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in report["entries"]:
        counts[entry["verdict"]] = counts.get(entry["verdict"], 0) + 1
    return counts


def _outcomes(report: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in report["actions"]:
        key = f"{outcome['kind']}:{outcome['result']}"
        counts[key] = counts.get(key, 0) + 1
    return counts


if __name__ == "__main__":
    main()
