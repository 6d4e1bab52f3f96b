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

from tests.daemonrig import PODS, REPO, Rig

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="host trees need mknod (root)")

# Short waits and timeouts so the tests run fast; every other setting is lhsweep's default.
TEST_CONFIG = {
    "cri": "timeout = 2\npoll_interval = 0.5",
    "sweep": "grace_period = 0\naction_timeout = 1",
    "daemon": "debounce = 0.1\nresync_interval = 3600",
}


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
    for i in range(500):
        os.mkdir(f"{pods}/burst-{i}")
    for i in range(500):
        os.rmdir(f"{pods}/burst-{i}")
    first = rig.wait_state(lambda s: s["sweep_number"] >= 2)
    assert "pod-dir" in first["triggers"]
    # Quiet now: give the daemon several debounce windows to start any sweep still owed.
    time.sleep(1.5)
    sweeps = rig.state()["sweep_number"]
    assert 2 <= sweeps <= 4, f"1,000 events cost {sweeps - 1} sweeps"


def test_sighup_with_broken_config_keeps_old_config_and_serving(rig: Rig) -> None:
    rig.start_cri()
    rig.start()
    rig.wait_ready()
    assert rig.daemon is not None
    rig.write_config(daemon="debounce = -3")
    rig.daemon.send_signal(signal.SIGHUP)
    status = rig.wait_ready().status
    assert "reload failed" in status and "daemon.debounce" in status
    assert rig.daemon.poll() is None
    os.mkdir(rig.tree.p(f"{PODS}/after-bad-reload"))
    state = rig.wait_state(lambda s: s["sweep_number"] >= 2)
    assert state["triggers"] == ["pod-dir"]
    assert "configuration reload failed, keeping the old one" in rig.stderr()

    rig.write_config()
    rig.daemon.send_signal(signal.SIGHUP)
    rig.wait_state(lambda s: "reload" in s["triggers"])
    assert "configuration reloaded" in rig.stderr()


def test_hung_dmsetup_neither_stops_watchdog_nor_later_sweeps(rig: Rig) -> None:
    rig.tree.add_longhorn_volume("pvc-h", backing_gone=True)
    rig.tree.set_dm("pvc-h", hang_seconds=30)
    rig.start_cri()
    rig.start(WATCHDOG_USEC="400000")
    started = time.monotonic()
    rig.wait_ready()
    pings = [t for t, m in rig.messages if m == "WATCHDOG=1"]
    boot = pings[-1] - started
    assert boot > 1.0, "the boot sweep should have waited on the hung dmsetup"
    gaps = [b - a for a, b in zip([started, *pings], pings)]
    assert max(gaps) < 0.2 * 4, f"watchdog pings paused while dmsetup hung: {gaps}"
    assert rig.tree.dm("pvc-h")  # still there: nothing removed while dmsetup hangs

    rig.tree.set_dm("pvc-h", hang_seconds=0)
    os.mkdir(rig.tree.p(f"{PODS}/later"))
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


def test_bad_config_exits_78_with_one_line(rig: Rig) -> None:
    rig.write_config(sweep="action_timeout = 0")
    rig.start()
    assert rig.daemon is not None
    assert rig.daemon.wait(timeout=20) == 78
    lines = rig.stderr().strip().splitlines()
    assert len(lines) == 1 and rig.config_path in lines[0] and "sweep.action_timeout" in lines[0]


def test_a_device_leaving_its_grace_period_is_swept_without_another_trigger(rig: Rig) -> None:
    """A young leftover is kept at first; the daemon looks again when its grace period ends."""
    rig.write_config(sweep="grace_period = 3\naction_timeout = 1")
    rig.tree.add_longhorn_volume("pvc-young")
    rig.start_cri()
    rig.start()
    assert rig.wait_ready().status.startswith("sweep 1: 0 removed")
    assert rig.removes() == []
    state = rig.wait_state(lambda s: s["counts"]["removed"] > 0, timeout=20)
    assert state["triggers"] == ["resync"]  # no pod-dir, uevent or CRI event: the grace timer
    assert ["dmsetup", "remove", "--", "pvc-young"] in rig.removes()
