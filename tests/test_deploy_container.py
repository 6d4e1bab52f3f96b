"""Container mode: decisions on stdout, /metrics, /healthz and /readyz; the rest as on the host."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lhsweep.config import Config
from lhsweep.container import container_mode
from lhsweep.daemon.http import Health, HttpServer
from lhsweep.daemon.loop import STALL_SLACK_S, Daemon, Parts
from lhsweep.daemon.notify import Notifier
from lhsweep.daemon.worker import SweepFn, TrackedRunner
from lhsweep.journal import Journal
from lhsweep.progress import Progress
from lhsweep.tools import KILL_GRACE_S
from tests.daemonrig import FAKES, REPO, Rig

pytestmark = pytest.mark.process

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="host trees need mknod (root)")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    """(HTTP status, body) of GET http://127.0.0.1:<port><path>."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def test_container_mode_is_what_the_image_environment_says() -> None:
    assert container_mode({"LHSWEEP_CONTAINER": "1"})
    assert not container_mode({})
    assert not container_mode({"LHSWEEP_CONTAINER": "0"})


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _unused(*_: object) -> object:
    raise AssertionError("not used by these tests")


@pytest.fixture
def idle_daemon() -> Daemon:
    """A Daemon that is never run: Health reads its counters and stall rule."""
    def sweeper(host_root: str, runner: TrackedRunner, progress: Progress) -> SweepFn:
        return _unused  # type: ignore[return-value]

    parts = Parts(sweeper=sweeper, pod_watcher=_unused, uevents=_unused,  # type: ignore[arg-type]
                  cri_watcher=_unused, notifier=Notifier({}),  # type: ignore[arg-type]
                  journal=Journal(None, io.StringIO()))
    return Daemon("/etc/lhsweep/lhsweep.toml", "/host", Config(daemon_resync_interval=300,
                                                              sweep_action_timeout=30), parts)


def test_liveness_fails_when_no_sweep_ends_for_longer_than_a_resync_and_one_sweep(
        idle_daemon: Daemon) -> None:
    clock = Clock()
    health = Health(idle_daemon, clock)
    limit = 300 + 30 + KILL_GRACE_S + STALL_SLACK_S
    clock.now += limit - 1
    assert health.live()[0]
    idle_daemon.reporter.sweep_number = 1  # a sweep ended: the age starts again
    clock.now += 2
    assert health.live() == (True, "sweep 1 finished 0s ago")
    clock.now += limit + 1
    alive, why = health.live()
    assert not alive and why.startswith("sweep 1 finished") and "more than" in why


def test_liveness_fails_while_the_running_sweep_is_stalled(idle_daemon: Daemon) -> None:
    clock = Clock()
    health = Health(idle_daemon, clock)
    idle_daemon.stalled_for = lambda now: 500.0  # type: ignore[method-assign]
    assert health.live() == (False, "the running sweep made no progress for 500s")


def test_readiness_comes_with_the_boot_sweep_and_the_server_answers_each_path(
        idle_daemon: Daemon) -> None:
    server = HttpServer(Health(idle_daemon), 0, "127.0.0.1")
    server.start()
    try:
        assert get(server.port, "/readyz")[0] == 503
        assert get(server.port, "/healthz") == (200, "ok: started 0s ago\n")
        idle_daemon.ready = True
        idle_daemon.reporter.status = "sweep 1: 0 removed"
        assert get(server.port, "/readyz") == (200, "ok: sweep 1: 0 removed\n")
        status, body = get(server.port, "/metrics")
        assert status == 200 and "lhsweep_sweeps_total" in body
        assert get(server.port, "/")[0] == 404
    finally:
        server.close()


@pytest.fixture
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A rig whose daemon serves HTTP on a free port."""
    made = Rig(tmp_path_factory.mktemp("c"), {
        "cri": "timeout = 2\npoll_interval = 0.5",
        "sweep": "grace_period = 0\naction_timeout = 30",  # the fake dmsetup is slow under load
        "daemon": "debounce = 0.1\nresync_interval = 3600",
        "metrics": f"port = {free_port()}",
    })
    try:
        yield made
    finally:
        made.close()


def start_in_container(rig: Rig) -> Path:
    """Start the rig's daemon as the image runs it (LHSWEEP_CONTAINER=1, no --log-target)."""
    stdout = rig.base / "daemon.stdout"
    env = dict(os.environ, PATH=f"{FAKES}:{os.environ['PATH']}", LHSWEEP_FAKE_ROOT=rig.tree.root,
               NOTIFY_SOCKET=rig.notify_path, PYTHONPATH=str(REPO), LHSWEEP_CONTAINER="1")
    argv = [sys.executable, "-m", "lhsweep.cli", "--config", rig.config_path,
            "--host-root", rig.tree.root, "daemon"]
    with open(stdout, "wb") as out, open(rig.stderr_path, "wb") as err:
        rig.daemon = subprocess.Popen(argv, env=env, stdout=out, stderr=err, cwd=REPO)
    return stdout


def wait_for(predicate: object, what: str, timeout: float = 60.0) -> None:
    """Poll `predicate` until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"never: {what}")


@ROOT_ONLY
def test_in_a_container_decisions_go_to_stdout_and_metrics_over_http(rig: Rig) -> None:
    port = int(rig.config["metrics"].split("=")[1])
    _, pod_dir = rig.add_im()
    rig.tree.add_longhorn_volume("pvc-a")
    rig.start_cri()
    stdout = start_in_container(rig)
    rig.wait_ready()
    assert get(port, "/readyz")[0] == 200 and get(port, "/healthz")[0] == 200

    rig.crash_im(pod_dir)
    wait_for(lambda: "removed stale dm pvc-a" in stdout.read_text(),
             f"removal logged on stdout; stdout: {stdout}, stderr: {rig.stderr_path}")
    lines = stdout.read_text().splitlines()
    assert lines[0] == (f"lhsweep: info: serving /metrics, /healthz and /readyz on port {port} "
                        "[event=lifecycle]")
    assert lines[1].startswith("lhsweep: info: lhsweep daemon started")
    assert any(line.startswith("lhsweep: notice: removed stale dm pvc-a (")
               and "[event=removed device=pvc-a " in line for line in lines)
    assert all(line.startswith("lhsweep: ") for line in lines)  # one line per entry
    assert ["dmsetup", "remove", "--", "pvc-a"] in rig.removes()
    assert 'lhsweep_removals_total{kind="dm"} 1.0' in get(port, "/metrics")[1]
    assert rig.stderr() == ""
