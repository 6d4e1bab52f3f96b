"""sd_notify, the sweep worker and the CRI watcher, each against real sockets, threads and servers."""

from __future__ import annotations

import os
import selectors
import socket
import threading
from pathlib import Path

import pytest

from lhsweep.config import Config
from lhsweep.cri import query_runtime
from lhsweep.daemon.cri_watch import CriWatcher, open_event_stream
from lhsweep.daemon.notify import Notifier, NotifySocket, watchdog_interval
from lhsweep.daemon.worker import SweepWorker, TrackedRunner
from lhsweep.errors import LockBusyError
from lhsweep.host import HostRoot
from lhsweep.model import RuntimeView, SweepReport
from tests.builders import report
from tests.crifake import FakeCri, im_pod

pytestmark = pytest.mark.process


def test_watchdog_interval_is_half_the_timeout_and_honours_the_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}, 42) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "42"}, 42) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, 42) is None
    assert watchdog_interval({}, 42) is None


@pytest.mark.parametrize("abstract", [False, True])
def test_notifier_sends_to_path_and_abstract_sockets(tmp_path: Path, abstract: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"lhsweep-test-{os.getpid()}" if abstract else str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name if abstract else name)
    listener.settimeout(5)
    address = "@" + name if abstract else name
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "3000000",
           "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier(env)
    assert notifier.watchdog_interval == 1.5
    notifier.ready("sweep 1: 0 removed\nsecond line")
    notifier.watchdog()
    notifier.stopping("bye")
    got = [listener.recv(4096).decode() for _ in range(3)]
    listener.close()
    assert got == ["READY=1\nSTATUS=sweep 1: 0 removed\\nsecond line", "WATCHDOG=1",
                   "STOPPING=1\nSTATUS=bye"]


def _no_socket() -> NotifySocket:
    raise AssertionError("no NOTIFY_SOCKET: nothing may be opened")


def test_notifier_is_silent_without_a_socket() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "1000000"}, factory=_no_socket)
    notifier.ready("x")
    notifier.watchdog()
    assert not notifier.enabled and notifier.watchdog_interval is None


def _wait_readable(fd_owner: object, timeout: float = 10.0) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(fd_owner, selectors.EVENT_READ)  # type: ignore[arg-type]
        return bool(sel.select(timeout))


def test_worker_runs_one_sweep_and_wakes_the_loop() -> None:
    release = threading.Event()
    seen: list[Config] = []

    def sweep(config: Config) -> SweepReport:
        seen.append(config)
        release.wait(10)
        return report()

    worker = SweepWorker(sweep)
    worker.start()
    worker.submit(Config(), ("boot",))
    assert worker.busy
    with pytest.raises(RuntimeError):
        worker.submit(Config(), ("again",))
    assert worker.collect() is None
    release.set()
    assert _wait_readable(worker)
    result = worker.collect()
    assert result is not None and result.report == report() and result.triggers == ("boot",)
    assert not worker.busy and seen == [Config()]
    worker.close()


def test_worker_hands_back_errors_and_survives_them() -> None:
    calls = iter([LockBusyError("held"), None])

    def sweep(config: Config) -> SweepReport:
        error = next(calls)
        if error is not None:
            raise error
        return report()

    worker = SweepWorker(sweep)
    worker.start()
    worker.submit(Config(), ("a",))
    first = worker.collect(timeout=10)
    assert first is not None and isinstance(first.error, LockBusyError) and first.report is None
    worker.submit(Config(), ("b",))
    second = worker.collect(timeout=10)
    assert second is not None and second.report is not None
    worker.close()


def test_tracked_runner_refuses_new_runs_once_stopping() -> None:
    runner = TrackedRunner(5)
    assert runner.run(["true"]).ok
    runner.stopping = True
    result = runner.run(["true"])
    assert not result.ok and "stopping" in result.stderr


def query(config: Config) -> RuntimeView:
    """query_runtime on a host without kubelet files: the runtime is the configured one."""
    return query_runtime(config, HostRoot("/nonexistent-host-root"))


def _config(fake: FakeCri, poll: float = 0.2) -> Config:
    return Config(cri_endpoints=(fake.endpoint,), cri_timeout=2.0, cri_poll_interval=poll)


def test_cri_events_trigger_only_for_known_instance_managers() -> None:
    with FakeCri() as fake:
        sandbox, containers = im_pod()
        fake.add_pod(sandbox, containers)
        config = _config(fake)
        watcher = CriWatcher(config, open_event_stream, query)
        watcher.start()
        try:
            watcher.observed(query(config))
            assert fake.wait_for_subscribers(1)
            fake.push_event("some-other-container", "CONTAINER_STOPPED_EVENT")
            fake.push_event(containers[0]["id"], "CONTAINER_STARTED_EVENT")
            fake.push_event(containers[0]["id"], "CONTAINER_STOPPED_EVENT")
            assert _wait_readable(watcher)
            assert watcher.handle() == "cri-event"
            assert watcher.mode == "events"
        finally:
            watcher.close()


def test_cri_without_events_falls_back_to_polling_and_sees_changes() -> None:
    with FakeCri() as fake:
        fake.set_behaviour("GetContainerEvents", abort="UNIMPLEMENTED")
        sandbox, containers = im_pod()
        fake.add_pod(sandbox, containers)
        config = _config(fake)
        watcher = CriWatcher(config, open_event_stream, query)
        watcher.start()
        try:
            watcher.observed(query(config))
            state = fake.state()
            state["containers"][0]["state"] = "CONTAINER_EXITED"
            fake.set_state(state)
            assert _wait_readable(watcher)
            assert watcher.handle() == "cri-poll"
            assert watcher.mode == "polling"
        finally:
            watcher.close()


def test_cri_watcher_reconnects_after_the_stream_breaks() -> None:
    with FakeCri() as fake:
        sandbox, containers = im_pod()
        fake.add_pod(sandbox, containers)
        config = _config(fake)
        watcher = CriWatcher(config, open_event_stream, query)
        watcher.start()
        try:
            watcher.observed(query(config))
            assert fake.wait_for_subscribers(1)
            fake.stop()
            assert watcher.handle() is None
            fake.start()
            assert fake.wait_for_subscribers(1, timeout=10), "the watcher did not subscribe again"
            fake.push_event(containers[0]["id"], "CONTAINER_DELETED_EVENT")
            assert _wait_readable(watcher)
            assert "cri-event" in (watcher.handle() or "")
        finally:
            watcher.close()
