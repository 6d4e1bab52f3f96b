"""The main loop's watchdog rule: fed while sweeps make progress, withheld from a wedged sweep."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator

import pytest

from lhsweep.config import WELL_KNOWN_CRI_SOCKETS, Config
from lhsweep.daemon.loop import STALL_SLACK_S, Daemon, Parts
from lhsweep.daemon.notify import Notifier
from lhsweep.daemon.worker import SweepFn, TrackedRunner
from lhsweep.journal import Journal
from lhsweep.model import ActionResult, SweepReport
from lhsweep.progress import Progress
from lhsweep.tools import KILL_GRACE_S
from tests.builders import entry, outcome, report


class Recorder:
    """A notify socket that keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def notify(self, state: str) -> None:
        self.sent.append(state)


def _never(*_: object) -> object:
    raise AssertionError("not used by these tests")


@pytest.fixture
def daemon() -> Iterator[tuple[Daemon, Recorder, threading.Event]]:
    release = threading.Event()

    def sweeper(host_root: str, runner: TrackedRunner, progress: Progress) -> SweepFn:
        def sweep(config: Config) -> SweepReport:
            release.wait(30)
            return report()
        return sweep

    sink = Recorder()
    notifier = Notifier({"NOTIFY_SOCKET": "/unused", "WATCHDOG_USEC": "2000000"}, lambda: sink)
    parts = Parts(sweeper=sweeper, pod_watcher=_never, uevents=_never,  # type: ignore[arg-type]
                  cri_watcher=_never, notifier=notifier,  # type: ignore[arg-type]
                  journal=Journal(None, io.StringIO()))
    made = Daemon("/etc/lhsweep/lhsweep.toml", "/", Config(sweep_action_timeout=5), parts)
    made.worker.start()
    yield made, sink, release
    release.set()


def test_watchdog_is_fed_while_idle_and_while_a_sweep_progresses(
        daemon: tuple[Daemon, Recorder, threading.Event]) -> None:
    d, sink, _ = daemon
    now = time.monotonic()
    d._feed_watchdog(now)
    d.worker.submit(d.config, ("boot",))
    d._feed_watchdog(now + 1)
    assert sink.sent == ["WATCHDOG=1", "WATCHDOG=1"]
    assert d.timers.at("watchdog") == pytest.approx(now + 2, abs=0.01)


def test_watchdog_is_withheld_once_a_sweep_stops_making_progress(
        daemon: tuple[Daemon, Recorder, threading.Event]) -> None:
    d, sink, release = daemon
    d.worker.submit(d.config, ("boot",))
    c = d.config
    sockets = len(c.cri_endpoints or WELL_KNOWN_CRI_SOCKETS)
    limit = c.sweep_action_timeout + KILL_GRACE_S + 3 * c.cri_timeout * sockets + STALL_SLACK_S
    started = max(d.runner.last_progress, d.worker.busy_since or 0.0)
    assert d.stalled_for(started + limit - 1) is None
    d._feed_watchdog(started + limit + 5)
    assert sink.sent == [f"STATUS=sweep made no progress for {limit + 5:.0f}s: watchdog not fed"]
    d.runner.last_progress = started + limit  # a tool run started: progress again
    d._feed_watchdog(started + limit + 5)
    assert sink.sent[-1] == "WATCHDOG=1"
    release.set()
    assert d.worker.collect(timeout=10) is not None
    assert d.stalled_for(started + 10 * limit) is None


def test_the_pods_directory_is_watched_at_its_place_inside_the_host_root(tmp_path) -> None:
    """kubelet's root is an absolute link on the host: it is followed inside the host root."""
    root = tmp_path / "host"
    (root / "data/kubelet/pods").mkdir(parents=True)
    (root / "var/lib").mkdir(parents=True)
    os.symlink("/data/kubelet", root / "var/lib/kubelet")
    watched: list[str] = []

    def pod_watcher(path: str) -> object:
        watched.append(path)
        raise OSError("not watching in this test")

    parts = Parts(sweeper=lambda *_: _never, pod_watcher=pod_watcher,  # type: ignore[arg-type]
                  uevents=_never, cri_watcher=_never,  # type: ignore[arg-type]
                  notifier=Notifier({}), journal=Journal(None, io.StringIO()))
    made = Daemon("/etc/lhsweep/lhsweep.toml", str(root), Config(), parts)
    made._open_sources()
    assert watched == [str(root / "data/kubelet/pods")]


def test_a_removal_that_ends_during_shutdown_is_journaled(tmp_path) -> None:
    """SIGTERM while a removal runs: its outcome, reported after the loop's last look, is still
    journaled before the daemon exits; READY is not sent while stopping."""
    stale = entry("pvc-term")
    done = outcome("pvc-term", ActionResult.REMOVED, "DM_DEV_REMOVE")
    planned = threading.Event()

    def sweeper(host_root: str, runner: TrackedRunner, progress: Progress) -> SweepFn:
        def sweep(config: Config) -> SweepReport:
            progress.planned(report(stale))
            planned.set()
            while not runner.stopping:  # the removal under way when SIGTERM comes
                time.sleep(0.01)
            progress.acted(stale, done)
            return report(stale, outcomes=(done,))
        return sweep

    journal, sink = io.StringIO(), Recorder()
    parts = Parts(sweeper=sweeper, pod_watcher=_never, uevents=_never,  # type: ignore[arg-type]
                  cri_watcher=_never,  # type: ignore[arg-type]
                  notifier=Notifier({"NOTIFY_SOCKET": "/unused"}, lambda: sink),
                  journal=Journal(None, journal))
    config = Config(sweep_action_timeout=5, metrics_file="", state_dir=str(tmp_path))
    made = Daemon("/etc/lhsweep/lhsweep.toml", "/", config, parts)
    made.worker.start()
    made._start_sweep(("boot",))
    assert planned.wait(10)
    made.stopping = True  # SIGTERM, before the loop looked at the plan
    assert made._shutdown() == 0
    assert "removed stale dm pvc-term" in journal.getvalue()
    assert not any(s.startswith("READY=1") for s in sink.sent), sink.sent
