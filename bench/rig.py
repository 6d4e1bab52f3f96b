"""A real `lhsweep daemon` process on a synthetic host, with a real gRPC CRI server and a NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from lhsweep.state import read_state
from tests import crifake
from tests.hosttree import HostTree

REPO = Path(__file__).resolve().parent.parent
FAKES = REPO / "tests" / "fakes"
PODS = "/var/lib/kubelet/pods"
# The shipped unit's WatchdogSec=60s: systemd passes WATCHDOG_USEC and we ping every 30 s.
UNIT_WATCHDOG_USEC = "60000000"


@dataclass(frozen=True)
class ProcSample:
    """CPU and wake-up counters of one process (all its threads) at one moment."""

    at: float
    cpu_s: float
    switches: int
    rss_kib: int
    hwm_kib: int
    threads: int


def _status_fields(path: str) -> dict[str, str]:
    """A /proc/.../status file as a dict (missing when the thread is gone: empty)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return dict(line.split(":", 1) for line in handle if ":" in line)
    except OSError:
        return {}


def sample(pid: int) -> ProcSample:
    """utime+stime (all threads), voluntary+involuntary context switches of every live thread, RSS."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)
    switches = 0
    tasks = os.listdir(f"/proc/{pid}/task")
    for task in tasks:
        status = _status_fields(f"/proc/{pid}/task/{task}/status")
        switches += sum(int(status.get(k, "0")) for k in ("voluntary_ctxt_switches",
                                                          "nonvoluntary_ctxt_switches"))
    status = _status_fields(f"/proc/{pid}/status")
    return ProcSample(time.monotonic(), cpu, switches, int(status["VmRSS"].split()[0]),
                      int(status["VmHWM"].split()[0]), len(tasks))


class Rig:
    """One daemon with everything it talks to, below `base` (keep it short: unix socket paths)."""

    def __init__(self, base: Path, config: Optional[dict[str, str]] = None) -> None:
        self.base = base
        self.tree = HostTree(str(base / "h"))
        os.makedirs(self.tree.p(PODS), exist_ok=True)
        self.cri_state = crifake.empty_state()
        self.cri_file = str(base / "cri.json")
        self.cri_socket = str(base / "cri.sock")
        self.state_dir = str(base / "state")
        self.config_path = str(base / "lhsweep.toml")
        sections = {
            "cri": f'endpoints = ["unix://{self.cri_socket}"]',
            "metrics": f'file = "{base / "lhsweep.prom"}"',
            "state": f'dir = "{self.state_dir}"',
        }
        sections.update(config or {})
        Path(self.config_path).write_text("".join(f"[{k}]\n{v}\n" for k, v in sections.items()))
        self.notify_path = str(base / "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
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
        """exec the daemon through the CLI entry point, fake tools first on PATH."""
        full_env = dict(os.environ, PATH=f"{FAKES}:{os.environ['PATH']}", LHSWEEP_FAKE_ROOT=self.tree.root,
                        NOTIFY_SOCKET=self.notify_path, PYTHONPATH=str(REPO), **env)
        argv = [sys.executable, *python_flags, "-m", "lhsweep.cli", "--config", self.config_path,
                "--host-root", self.tree.root, "--log-target", "stderr", "daemon"]
        with open(self.stderr_path, "wb") as err:
            self.started_at = time.monotonic()
            self.daemon = subprocess.Popen(argv, env=full_env, stderr=err, cwd=REPO)

    def wait_message(self, want: Callable[[str], bool], timeout: float = 60.0) -> tuple[float, str]:
        """The first notify datagram satisfying `want`: (monotonic arrival time, text)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.notify.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                text = self.notify.recv(65536).decode()
            except socket.timeout:
                break
            self.messages.append((time.monotonic(), text))
            if want(text):
                return self.messages[-1]
        raise RuntimeError(f"no such notify message in {timeout:.0f} s; stderr: {self.stderr()[-800:]}")

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from exec to READY=1."""
        arrived, _ = self.wait_message(lambda m: "READY=1" in m.splitlines(), timeout)
        return arrived - self.started_at

    def state(self) -> dict[str, Any]:
        """The daemon's state file (empty before the first sweep)."""
        return read_state(self.state_dir) or {}

    def stderr(self) -> str:
        """What the daemon logged."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

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
