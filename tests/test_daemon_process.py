"""The real daemon as a subprocess: host tree, fake tools, a real gRPC CRI server, a NOTIFY_SOCKET."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lhsweep.daemon.timers import MAX_WAIT_WINDOWS
from lhsweep.host import HostRoot
from lhsweep.inventory import read_subsystems
from tests.daemonrig import PODS, REPO, Rig

pytestmark = [pytest.mark.process,
              pytest.mark.skipif(os.geteuid() != 0, reason="host trees need mknod (root)")]

# Short waits and timeouts so the tests run fast; every other setting is lhsweep's default.
ACTION_TIMEOUT_S = 15  # far above what a fake tool (a Python start) takes on a loaded machine
HUNG_ACTION_TIMEOUT_S = 5  # where a call hangs on purpose and the test waits for its cut
DEBOUNCE_S = 0.1
TEST_CONFIG = {
    "cri": "timeout = 2\npoll_interval = 0.5",
    "sweep": f"grace_period = 0\naction_timeout = {ACTION_TIMEOUT_S}",
    "daemon": f"debounce = {DEBOUNCE_S}\nresync_interval = 3600",
}
WATCHDOG_USEC = "400000"  # a ping due every 0.2 s


def hang_config(rig: Rig) -> None:
    """The action timeout a hung call is cut at (HUNG_ACTION_TIMEOUT_S)."""
    rig.write_config(sweep=f"grace_period = 0\naction_timeout = {HUNG_ACTION_TIMEOUT_S}")


def assert_pinged_throughout(rig: Rig, until: float) -> None:
    """WATCHDOG=1 kept coming up to `until`, while a call hung for the action timeout: a loop that
    waited on the call would go silent that long; half of it (a dozen ping intervals) is the bound."""
    pings = [t for t, m in rig.messages if m == "WATCHDOG=1" and t <= until]
    gaps = [b - a for a, b in zip(pings, [*pings[1:], until])]  # from the first: start-up is not the point
    assert len(pings) >= 3 and max(gaps) < HUNG_ACTION_TIMEOUT_S / 2, f"watchdog pings paused: {gaps}"


@pytest.fixture
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A rig in a short temporary directory (unix socket paths are limited to 107 bytes)."""
    made = Rig(tmp_path_factory.mktemp("d"), TEST_CONFIG)
    try:
        yield made
    finally:
        made.close()


def test_ready_after_boot_sweep_then_pod_loss_removes_leftovers(rig: Rig) -> None:
    _, pod_dir = rig.add_im()
    vol = rig.tree.add_longhorn_volume("pvc-a")
    rig.start_cri()
    rig.start()
    status = rig.wait_ready().status
    assert status.startswith("sweep 1: 0 removed") and "1 live instance-manager" in status
    assert rig.state()["sweep_number"] == 1  # written before READY
    assert rig.removes() == []

    rig.crash_im(pod_dir)
    state = rig.wait_state(lambda s: s["counts"]["removed"] > 0)
    assert state["triggers"] and set(state["triggers"]) <= {"pod-dir", "cri-event", "uevent"}
    assert ["dmsetup", "remove", "--", "pvc-a"] in rig.removes()
    assert ["nvme", "disconnect", "--nqn", vol.nqn] in rig.removes()
    assert "removed stale dm pvc-a" in rig.stderr()
    assert "lhsweep_removals_total{kind=\"dm\"} 1.0" in Path(rig.metrics_file).read_text()
    status_cmd = [sys.executable, "-m", "lhsweep.cli", "--config", rig.config_path, "status"]
    shown = subprocess.run(status_cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert f"last sweep: #{state['sweep_number']}" in shown and "removed: dm pvc-a" in shown
    as_json = subprocess.run([*status_cmd, "--json"], capture_output=True, text=True, check=True,
                             cwd=REPO).stdout
    assert json.loads(as_json)["sweep_number"] == state["sweep_number"]


def test_pods_dir_appearing_later_is_watched_and_resyncs(rig: Rig) -> None:
    os.rmdir(rig.tree.p(PODS))
    rig.start_cri()
    rig.start()
    rig.wait_ready()
    os.makedirs(rig.tree.p(PODS))
    state = rig.wait_state(lambda s: s["sweep_number"] >= 2)
    assert state["triggers"] == ["pods-dir-appeared"]
    os.mkdir(rig.tree.p(f"{PODS}/uid-new"))
    state = rig.wait_state(lambda s: s["sweep_number"] >= 3)
    assert state["triggers"] == ["pod-dir"]


def test_burst_of_pod_dir_events_costs_a_bounded_number_of_sweeps(rig: Rig) -> None:
    rig.start_cri()
    rig.start()
    rig.wait_ready()
    pods = rig.tree.p(PODS)
    began = time.monotonic()
    for i in range(500):
        os.mkdir(f"{pods}/burst-{i}")
    for i in range(500):
        os.rmdir(f"{pods}/burst-{i}")
    burst_s = time.monotonic() - began
    first = rig.wait_state(lambda s: s["sweep_number"] >= 2)
    assert "pod-dir" in first["triggers"]
    sweeps = _settled_sweep_number(rig, quiet_s=20 * DEBOUNCE_S) - 1
    # Three for a burst shorter than the debounce cap (the first sweep, events read while it ran,
    # the tail), and one more per cap (MAX_WAIT_WINDOWS windows) a slow machine spreads it over.
    bound = 3 + int(burst_s / (MAX_WAIT_WINDOWS * DEBOUNCE_S))
    assert 1 <= sweeps <= bound, f"1,000 events in {burst_s:.2f} s cost {sweeps} sweeps (bound {bound})"


def _settled_sweep_number(rig: Rig, quiet_s: float) -> int:
    """The sweep number once no sweep has started for `quiet_s` (polled; at most a minute)."""
    deadline = time.monotonic() + 60
    number, since = rig.state()["sweep_number"], time.monotonic()
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(DEBOUNCE_S)
        latest = rig.state()["sweep_number"]
        if latest != number:
            number, since = latest, time.monotonic()
    return number


@pytest.mark.parametrize(("broken", "named"), [
    ({"daemon": "debounce = -3"}, "daemon.debounce"),
    ({"a]\n[[a]]\n[daemon": ""}, "not valid TOML"),  # the toml library raises AttributeError
])
def test_sighup_with_broken_config_keeps_old_config_and_serving(
        rig: Rig, broken: dict[str, str], named: str) -> None:
    rig.start_cri()
    rig.start()
    rig.wait_ready()
    assert rig.daemon is not None
    rig.write_config(**broken)
    rig.daemon.send_signal(signal.SIGHUP)
    status = rig.wait_ready().status
    assert "reload failed" in status and named in status
    assert rig.daemon.poll() is None
    os.mkdir(rig.tree.p(f"{PODS}/after-bad-reload"))
    state = rig.wait_state(lambda s: s["sweep_number"] >= 2)
    assert state["triggers"] == ["pod-dir"]
    assert "configuration reload failed, keeping the old one" in rig.stderr()

    rig.write_config()
    rig.daemon.send_signal(signal.SIGHUP)
    rig.wait_state(lambda s: "reload" in s["triggers"])
    assert "configuration reloaded" in rig.stderr()


def test_sighup_to_a_state_dir_that_cannot_be_used_keeps_the_old_one(rig: Rig) -> None:
    """Checked at start (exit 73), and so on reload: the old configuration stays, said why."""
    rig.start_cri()
    rig.start()
    rig.wait_ready()
    assert rig.daemon is not None
    usable, rig.state_dir = rig.state_dir, "/dev/null/lhsweep"
    rig.write_config()
    rig.daemon.send_signal(signal.SIGHUP)
    status = rig.wait_ready().status
    assert "reload failed" in status and "state.dir /dev/null/lhsweep: cannot create" in status
    rig.state_dir = usable
    os.mkdir(rig.tree.p(f"{PODS}/after-bad-reload"))
    assert rig.wait_state(lambda s: s["sweep_number"] >= 2)["triggers"] == ["pod-dir"]


def test_hung_dmsetup_neither_stops_watchdog_nor_later_sweeps(rig: Rig) -> None:
    hang_config(rig)
    rig.tree.add_longhorn_volume("pvc-h", backing_gone=True)
    rig.tree.set_dm("pvc-h", hang_seconds=60)
    rig.start_cri()
    rig.start(WATCHDOG_USEC=WATCHDOG_USEC)
    ready = rig.wait_ready()
    # READY once the plan is made: it does not wait for the hung dmsetup.
    assert ready.status == "boot sweep planned: 2 removal(s) under way"
    assert rig.state() == {}, "READY should not wait for the end of the boot sweep"
    ended, _ = rig.wait_message(lambda m: m.startswith("STATUS=sweep 1: "))  # after the action timeout
    assert_pinged_throughout(rig, ended)
    assert rig.tree.dm("pvc-h")  # still there: nothing removed while dmsetup hangs

    rig.tree.set_dm("pvc-h", hang_seconds=0)
    rig.write_config()  # the reload's sweep runs dmsetup with the generous action timeout
    rig.daemon.send_signal(signal.SIGHUP)  # a pod directory the runtime does not know would be "unknown"
    state = rig.wait_state(lambda s: s["counts"]["removed"] > 0)
    assert state["sweep_number"] >= 2
    assert ["dmsetup", "remove", "--", "pvc-h"] in rig.removes()


def test_runtime_unknown_at_boot_is_ready_removes_nothing_and_retries(rig: Rig) -> None:
    rig.tree.add_longhorn_volume("pvc-u", backing_gone=True)
    rig.start()
    status = rig.wait_ready().status
    assert "runtime unknown" in status and "retrying in 1s, nothing removed" in status
    assert rig.removes() == []
    rig.start_cri()
    state = rig.wait_state(lambda s: s["counts"]["removed"] > 0)
    assert "retry" in state["triggers"]
    assert ["dmsetup", "remove", "--", "pvc-u"] in rig.removes()


def test_sigterm_stops_cleanly_within_a_bound(rig: Rig) -> None:
    rig.start_cri()
    rig.start()
    rig.wait_ready()
    assert rig.daemon is not None
    rig.daemon.send_signal(signal.SIGTERM)
    rig.wait_message(lambda m: m.startswith("STOPPING=1"), timeout=5)
    assert rig.daemon.wait(timeout=5) == 0


@pytest.mark.parametrize(("broken", "named"), [
    ({"sweep": "action_timeout = 0"}, "sweep.action_timeout"),
    ({"a]\n[[a]]\n[sweep": ""}, "not valid TOML"),  # the toml library raises AttributeError
])
def test_bad_config_exits_78_with_one_line(rig: Rig, broken: dict[str, str], named: str) -> None:
    rig.write_config(**broken)
    rig.start()
    assert rig.daemon is not None
    assert rig.daemon.wait(timeout=20) == 78
    lines = rig.stderr().strip().splitlines()
    assert len(lines) == 1 and rig.config_path in lines[0] and named in lines[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root with setpriv")
def test_not_root_exits_77_once_naming_the_privilege() -> None:
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
            "lhsweep", "--config", "/nonexistent/lhsweep.toml", "--log-target", "stderr", "daemon"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 77
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("lhsweep: missing privilege: ")
    assert "as root" in done.stderr and "Traceback" not in done.stderr


def test_each_removal_is_journaled_and_counted_before_the_next_one(rig: Rig) -> None:
    """A SIGKILL in the middle of a sweep loses no record of the removals already done."""
    rig.write_config(sweep="grace_period = 0\naction_timeout = 60")
    first = rig.tree.add_longhorn_volume("pvc-a")
    last = rig.tree.add_longhorn_volume("pvc-b")
    # Removal order: dm devices, nodes, controllers, each by name: pvc-b's controller is last.
    rig.tree.set_nvme(last.nqn, hang_seconds=120)
    rig.start_cri()
    rig.start()
    rig.wait_ready()
    hung = ["nvme", "disconnect", "--nqn", last.nqn]
    deadline = time.monotonic() + 30
    while hung not in rig.calls() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hung in rig.calls()
    assert rig.daemon is not None
    rig.daemon.kill()  # while pvc-b's disconnect hangs: the sweep has not ended
    rig.daemon.wait(timeout=10)
    assert rig.state() == {}
    removed = [line for line in rig.stderr().splitlines() if "removed stale" in line]
    assert [line.split(" (", 1)[0] for line in removed] == [
        f"lhsweep: notice: removed stale {what}" for what in
        ("dm pvc-a", "dm pvc-b", "node pvc-a", "node pvc-b", f"nvme {first.nqn}")]
    assert all("verdict_reason=" in line and "no V2 instance-manager" in line for line in removed)
    assert 'lhsweep_removals_total{kind="node"} 2.0' in Path(rig.metrics_file).read_text()


def test_a_busy_leftover_freed_without_a_uevent_is_rechecked_soon(rig: Rig) -> None:
    rig.write_config(daemon="debounce = 0.1\nresync_interval = 3600\nbusy_recheck_interval = 0.5",
                     sweep="grace_period = 0\naction_timeout = 30")
    rig.tree.add_longhorn_volume("pvc-held", backing_gone=True, open_count=1)
    rig.start_cri()
    rig.start()
    rig.wait_ready()
    assert rig.state()["counts"]["busy"] > 0 and rig.removes() == []
    rig.tree.set_dm("pvc-held", open=0)  # the reader closes it: no uevent, no pod change
    state = rig.wait_state(lambda s: s["counts"]["removed"] > 0)
    assert state["triggers"] == ["busy-recheck"]
    assert ["dmsetup", "remove", "--", "pvc-held"] in rig.removes()


def test_a_device_leaving_its_grace_period_is_swept_without_another_trigger(rig: Rig) -> None:
    """A young leftover is kept at first; the daemon looks again when its grace period ends."""
    grace_s = 8  # far longer than a reload's sweep takes to plan on a loaded machine
    rig.write_config(sweep=f"grace_period = {grace_s}\naction_timeout = {ACTION_TIMEOUT_S}")
    rig.start_cri()
    rig.start()
    rig.wait_ready()  # after start-up, however slow: the leftover's grace begins now
    rig.tree.add_longhorn_volume("pvc-young")
    assert rig.daemon is not None
    rig.daemon.send_signal(signal.SIGHUP)
    kept = rig.wait_state(lambda s: "reload" in s["triggers"])
    assert kept["counts"]["removed"] == 0 and rig.removes() == []
    state = rig.wait_state(lambda s: s["counts"]["removed"] > 0, timeout=grace_s + 30)
    assert state["triggers"] == ["grace-end"]  # no pod-dir, uevent, CRI event or resync
    assert ["dmsetup", "remove", "--", "pvc-young"] in rig.removes()


def test_a_hung_in_process_removal_is_reported_and_the_watchdog_keeps_going(rig: Rig) -> None:
    """The kernel-call helper blocks (its controller's delete_controller is a FIFO nobody reads):
    the call is cut at the action timeout and reported, pings go on, and a later sweep finishes."""
    vol = rig.tree.add_longhorn_volume("pvc-k", with_node=False)
    [subsystem] = [s for s in read_subsystems(HostRoot(rig.tree.root))[0] if s.nqn == vol.nqn]
    attribute = rig.tree.p(f"/sys/class/nvme/{subsystem.controllers[0].name}/delete_controller")
    os.mkfifo(attribute)
    hang_config(rig)
    rig.start_cri()
    rig.start(WATCHDOG_USEC=WATCHDOG_USEC)
    rig.wait_ready()
    ended, _ = rig.wait_message(lambda m: m.startswith("STATUS=sweep 1: "))  # after the action timeout
    state = rig.wait_state(lambda s: s["sweep_number"] >= 1)
    [failed] = [a for a in state["report"]["actions"] if a["name"] == vol.nqn]
    assert failed["result"] == "failed" and "nvme-delete timed out" in failed["detail"]
    assert_pinged_throughout(rig, ended)
    assert not [c for c in rig.calls() if c[0] == "nvme"], "the in-process path fell back to the nvme tool"

    os.unlink(attribute)
    Path(attribute).write_text("")
    rig.write_config()  # the reload's sweep starts the helper with the generous action timeout
    rig.daemon.send_signal(signal.SIGHUP)
    rig.wait_state(lambda s: any(a["name"] == vol.nqn and a["result"] == "removed"
                                 for a in s["report"]["actions"]))
    assert Path(attribute).read_text() == "1"
