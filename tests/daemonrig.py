"""A real `lhsweep daemon` process with all it talks to: host tree, fake tools, CRI server, NOTIFY_SOCKET.

Shared by tests/test_daemon_process.py and the benchmarks (bench/). The CRI server is
tests/crifake.py as a subprocess, fed through a state file; the daemon runs through the CLI entry
point with the fake dmsetup/nvme first on PATH. Needs root (the host tree's block nodes).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

from lhsweep.state import read_state
from tests import crifake
from tests.hosttree import HostTree

REPO = Path(__file__).resolve().parent.parent
FAKES = REPO / "tests" / "fakes"
PODS = "/var/lib/kubelet/pods"
WAIT_S = 60.0
# SO_TIMESTAMP (asm-generic/socket.h; Python's socket module does not name it) and its struct timeval.
SO_TIMESTAMP = 29
TIMEVAL = struct.Struct("@ll")


class Ready(NamedTuple):
    """The READY=1 datagram: seconds since the daemon was started, and its STATUS text."""

    after_s: float
    status: str


class Rig:
    """One daemon with everything it talks to, below `base` (keep it short: unix socket paths).

    `config` maps a config section to its body; the rig's own paths (CRI socket, metrics file,
    state directory) always head their sections, every other setting keeps lhsweep's default.
    """

    def __init__(self, base: Path, config: Optional[Mapping[str, str]] = None) -> None:
        self.base = base
        self.tree = HostTree(str(base / "h"))
        os.makedirs(self.tree.p(PODS), exist_ok=True)
        self.cri_state = crifake.empty_state()
        self.cri_file = str(base / "cri.json")
        self.cri_socket = str(base / "cri.sock")
        self.state_dir = str(base / "state")
        self.config_path = str(base / "lhsweep.toml")
        self.metrics_file = str(base / "lhsweep.prom")
        self.config = dict(config or {})
        self.write_config()
        self.notify_path = str(base / "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        # The kernel stamps each datagram as it is queued: times stay right if the test reads late.
        self.notify.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        self.messages: list[tuple[float, str]] = []
        self.stderr_path = base / "daemon.stderr"
        self.cri: Optional[subprocess.Popen[str]] = None
        self.daemon: Optional[subprocess.Popen[bytes]] = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        """The daemon's pid."""
        assert self.daemon is not None
        return self.daemon.pid

    def write_config(self, **sections: str) -> None:
        """Write the config file: the rig's `config` with `sections` replacing whole section bodies."""
        own = {
            "cri": f'endpoints = ["unix://{self.cri_socket}"]',
            "metrics": f'file = "{self.metrics_file}"',
            "state": f'dir = "{self.state_dir}"',
        }
        bodies = {**dict.fromkeys(own, ""), **self.config, **sections}
        text = "".join(f"[{name}]\n" + "".join(f"{line}\n" for line in (own.get(name), body) if line)
                       for name, body in bodies.items())
        Path(self.config_path).write_text(text, encoding="utf-8")

    def add_im(self, container_state: str = "CONTAINER_RUNNING") -> tuple[dict[str, Any], str]:
        """An hour-old instance-manager in the runtime with its pod directory: (sandbox, pod dir)."""
        sandbox, containers = crifake.im_pod(container_state=container_state,
                                             created_at_ns=time.time_ns() - 3600 * 10**9)
        self.cri_state["sandboxes"].append(sandbox)
        self.cri_state["containers"].extend(containers)
        pod_dir = self.tree.p(f"{PODS}/{sandbox['metadata']['uid']}")
        os.makedirs(pod_dir)
        self.push_cri()
        return sandbox, pod_dir

    def crash_im(self, pod_dir: str) -> None:
        """The first container is SIGKILLed: CRI says exited (and sends the event), `pod_dir` goes."""
        container = self.cri_state["containers"][0]
        container["state"] = "CONTAINER_EXITED"
        self.cri_state["events"].append({"container_id": container["id"],
                                         "type": "CONTAINER_STOPPED_EVENT"})
        self.push_cri()
        os.rmdir(pod_dir)

    def push_cri(self) -> None:
        """Hand the runtime state to the CRI server (it reloads the file)."""
        crifake.write_state(self.cri_file, self.cri_state)

    def start_cri(self) -> None:
        """Start the CRI server subprocess and wait until it serves."""
        self.push_cri()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.cri = subprocess.Popen([sys.executable, str(REPO / "tests" / "crifake.py"), "--socket",
                                     self.cri_socket, "--state", self.cri_file],
                                    stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
        assert self.cri.stdout is not None
        if self.cri.stdout.readline().strip() != "ready":
            raise RuntimeError("the fake CRI server did not start")

    def start(self, python_flags: tuple[str, ...] = (), **env: str) -> None:
        """Exec the daemon through the CLI entry point (`env` added), fake tools first on PATH."""
        full_env = dict(os.environ, PATH=f"{FAKES}:{os.environ['PATH']}",
                        LHSWEEP_FAKE_ROOT=self.tree.root, NOTIFY_SOCKET=self.notify_path,
                        PYTHONPATH=str(REPO), **env)
        argv = [sys.executable, *python_flags, "-m", "lhsweep.cli", "--config", self.config_path,
                "--host-root", self.tree.root, "--log-target", "stderr", "daemon"]
        with open(self.stderr_path, "wb") as err:
            self.started_at = time.monotonic()
            self.daemon = subprocess.Popen(argv, env=full_env, stderr=err, cwd=REPO)

    def wait_message(self, want: Callable[[str], bool], timeout: float = WAIT_S) -> tuple[float, str]:
        """The first notify datagram satisfying `want`: (monotonic arrival time, text)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.notify.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, ancillary, _, _ = self.notify.recvmsg(65536, socket.CMSG_SPACE(TIMEVAL.size))
            except socket.timeout:
                break
            self.messages.append((_queued_at(ancillary), data.decode()))
            if want(self.messages[-1][1]):
                return self.messages[-1]
        recent = [m for _, m in self.messages][-5:]
        raise AssertionError(f"no such notify message in {timeout:.0f} s; got {recent}; "
                             f"stderr: {self.stderr()[-800:]}")

    def wait_ready(self, timeout: float = WAIT_S) -> Ready:
        """Wait for READY=1."""
        arrived, text = self.wait_message(lambda m: "READY=1" in m.splitlines(), timeout)
        return Ready(arrived - self.started_at, text.split("STATUS=", 1)[-1])

    def state(self) -> dict[str, Any]:
        """The daemon's state file (empty before the first sweep)."""
        return read_state(self.state_dir) or {}

    def wait_state(self, want: Callable[[dict[str, Any]], bool],
                   timeout: float = WAIT_S) -> dict[str, Any]:
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
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL) and the CRI server."""
        for proc in (self.daemon, self.cri):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.notify.close()


def _queued_at(ancillary: list[tuple[int, int, bytes]]) -> float:
    """When the kernel queued a datagram (its SO_TIMESTAMP), on the monotonic clock."""
    for level, kind, payload in ancillary:
        if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMP):
            seconds, micros = TIMEVAL.unpack(payload[:TIMEVAL.size])
            return time.monotonic() - max(0.0, time.time() - (seconds + micros / 1e6))
    return time.monotonic()
