"""The real daemon as a subprocess: host tree, fake tools, a real gRPC CRI server, a NOTIFY_SOCKET."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from lhsweep.state import read_state
from tests import crifake
from tests.hosttree import HostTree

REPO = Path(__file__).resolve().parent.parent
FAKES = REPO / "tests" / "fakes"
PODS = "/var/lib/kubelet/pods"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="host trees need mknod (root)")


class Rig:
    """One daemon under test with everything it talks to."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.tree = HostTree(str(base / "h"))
        os.makedirs(self.tree.p(PODS), exist_ok=True)
        self.cri_state = crifake.empty_state()
        self.cri_file = str(base / "cri.json")
        self.cri_socket = str(base / "cri.sock")
        self.state_dir = str(base / "state")
        self.config_path = str(base / "lhsweep.toml")
        self.metrics_file = str(base / "lhsweep.prom")
        self.write_config()
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(base / "notify.sock"))
        self.messages: list[tuple[float, str]] = []
        self.stderr_path = base / "daemon.stderr"
        self.cri: Optional[subprocess.Popen[str]] = None
        self.daemon: Optional[subprocess.Popen[bytes]] = None

    def write_config(self, **sections: str) -> None:
        """The test config; `sections` replace whole [section] bodies."""
        body = {
            "cri": f'endpoints = ["unix://{self.cri_socket}"]\ntimeout = 2\npoll_interval = 0.5',
            "sweep": "grace_period = 0\naction_timeout = 1",
            "daemon": "debounce = 0.1\nresync_interval = 3600",
            "metrics": f'file = "{self.metrics_file}"',
            "state": f'dir = "{self.state_dir}"',
        }
        body.update(sections)
        text = "".join(f"[{name}]\n{lines}\n" for name, lines in body.items())
        Path(self.config_path).write_text(text, encoding="utf-8")

    def add_im(self, container_state: str = "CONTAINER_RUNNING") -> tuple[dict[str, Any], str]:
        """An instance-manager in the runtime with its pod directory; (sandbox, pod dir)."""
        sandbox, containers = crifake.im_pod(container_state=container_state,
                                             created_at_ns=time.time_ns() - 3600 * 10**9)
        self.cri_state["sandboxes"].append(sandbox)
        self.cri_state["containers"].extend(containers)
        pod_dir = self.tree.p(f"{PODS}/{sandbox['metadata']['uid']}")
        os.makedirs(pod_dir)
        self.push_cri()
        return sandbox, pod_dir

    def push_cri(self) -> None:
        """Hand the runtime state to the fake CRI server (it reloads the file)."""
        crifake.write_state(self.cri_file, self.cri_state)

    def start_cri(self) -> None:
        """Start the fake CRI server subprocess and wait until it serves."""
        self.push_cri()
        self.cri = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "crifake.py"), "--socket", self.cri_socket,
             "--state", self.cri_file], stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.cri.stdout is not None
        assert self.cri.stdout.readline().strip() == "ready"

    def start(self, **env: str) -> None:
        """Start the daemon (through the CLI entry point) with the fake tools on PATH."""
        full_env = dict(os.environ, PATH=f"{FAKES}:{os.environ['PATH']}",
                        LHSWEEP_FAKE_ROOT=self.tree.root, NOTIFY_SOCKET=str(self.base / "notify.sock"),
                        PYTHONPATH=str(REPO), **env)
        with open(self.stderr_path, "wb") as err:
            self.daemon = subprocess.Popen(
                [sys.executable, "-m", "lhsweep.cli", "--config", self.config_path,
                 "--host-root", self.tree.root, "--log-target", "stderr", "daemon"],
                env=full_env, stderr=err, cwd=REPO)

    def wait_message(self, want: Callable[[str], bool], timeout: float = 20.0) -> str:
        """Read notify datagrams until one satisfies `want`; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.notify.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                text = self.notify.recv(65536).decode()
            except socket.timeout:
                break
            self.messages.append((time.monotonic(), text))
            if want(text):
                return text
        raise AssertionError(f"no such notify message; got {[m for _, m in self.messages][-5:]}")

    def wait_ready(self) -> str:
        """The READY=1 datagram's STATUS text."""
        text = self.wait_message(lambda m: "READY=1" in m.splitlines())
        return text.split("STATUS=", 1)[1]

    def state(self) -> dict[str, Any]:
        """The daemon's state file."""
        state = read_state(self.state_dir)
        assert state is not None
        return state

    def wait_state(self, want: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        """Poll the state file until `want` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = read_state(self.state_dir)
            if state is not None and want(state):
                return state
            time.sleep(0.05)
        raise AssertionError(f"state never matched; last: {read_state(self.state_dir)}")

    def calls(self) -> list[list[str]]:
        """The fake tools' calls so far."""
        path = self.tree.p("/.fake/calls.log")
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def removes(self) -> list[list[str]]:
        """Only the removal calls."""
        return [c for c in self.calls() if c[1:2] in (["remove"], ["disconnect"])]

    def stderr(self) -> str:
        """What the daemon logged."""
        return self.stderr_path.read_text(encoding="utf-8")

    def close(self) -> None:
        """Stop whatever still runs."""
        for proc in (self.daemon, self.cri):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        self.notify.close()


@pytest.fixture
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A rig in a short temporary directory (unix socket paths are limited to 107 bytes)."""
    made = Rig(tmp_path_factory.mktemp("d"))
    try:
        yield made
    finally:
        made.close()


def test_ready_after_boot_sweep_then_pod_loss_removes_leftovers(rig: Rig) -> None:
    _, pod_dir = rig.add_im()
    vol = rig.tree.add_longhorn_volume("pvc-a")
    rig.start_cri()
    rig.start()
    status = rig.wait_ready()
    assert status.startswith("sweep 1: 0 removed") and "1 live instance-manager" in status
    assert rig.state()["sweep_number"] == 1  # written before READY
    assert rig.removes() == []

    container = rig.cri_state["containers"][0]
    container["state"] = "CONTAINER_EXITED"
    rig.cri_state["events"].append({"container_id": container["id"],
                                    "type": "CONTAINER_STOPPED_EVENT"})
    os.rmdir(pod_dir)
    rig.push_cri()
    state = rig.wait_state(lambda s: s["counts"]["removed"] > 0)
    assert state["triggers"] and set(state["triggers"]) <= {"pod-dir", "cri-event", "uevent"}
    assert ["dmsetup", "remove", "pvc-a"] in rig.removes()
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
    status = rig.wait_ready()
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
    assert ["dmsetup", "remove", "pvc-h"] in rig.removes()


def test_runtime_unknown_at_boot_is_ready_removes_nothing_and_retries(rig: Rig) -> None:
    rig.tree.add_longhorn_volume("pvc-u", backing_gone=True)
    rig.start()
    status = rig.wait_ready()
    assert "runtime unknown" in status and "retrying in 1s, nothing removed" in status
    assert rig.removes() == []
    rig.start_cri()
    state = rig.wait_state(lambda s: s["counts"]["removed"] > 0)
    assert "retry" in state["triggers"]
    assert ["dmsetup", "remove", "pvc-u"] in rig.removes()


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
