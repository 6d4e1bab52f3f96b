"""ContainerEventStream against the fake runtime, and the fake runtime run as a subprocess."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lhsweep.config import Config
from lhsweep.cri import CriCallError, CriUnimplementedError, Failure, query_runtime
from lhsweep.cri.events import ContainerEvent, ContainerEventStream
from lhsweep.host import HostRoot
from lhsweep.model import RuntimeState
from tests.crifake import FakeCri, empty_state, im_pod, write_state

pytestmark = pytest.mark.process

NO_KUBELET = HostRoot("/nonexistent-host-root")  # the runtime is the configured one

TIMEOUT = 5.0
# An idle stream ends this soon after cancel(): it takes milliseconds; the bound allows for a loaded
# machine and stays well under the timeouts a cancel that did not work would run into.
PROMPT_S = TIMEOUT / 2
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRIFAKE = os.path.join(REPO, "tests", "crifake.py")


@pytest.fixture
def cri() -> Iterator[FakeCri]:
    with FakeCri() as fake:
        yield fake


def consume(stream: ContainerEventStream, into: list[object]) -> threading.Thread:
    """Iterate `stream` in a thread, appending events (or the error that ended it) to `into`."""

    def run() -> None:
        try:
            into.extend(stream)
        except CriCallError as exc:
            into.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_events_arrive_in_order_and_cancel_ends_the_stream(cri: FakeCri) -> None:
    stream = ContainerEventStream(cri.endpoint, TIMEOUT)
    received: list[object] = []
    thread = consume(stream, received)
    assert cri.wait_for_subscribers(1)
    cri.push_event("c1", "CONTAINER_STARTED_EVENT")
    cri.push_event("c1", "CONTAINER_STOPPED_EVENT")
    cri.push_event("c2", "CONTAINER_DELETED_EVENT")
    cri.push_event("c3", "CONTAINER_CREATED_EVENT")
    while len(received) < 4 and thread.is_alive():
        thread.join(0.01)
    stream.cancel()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert received == [ContainerEvent("c1", "started"), ContainerEvent("c1", "stopped"),
                        ContainerEvent("c2", "deleted"), ContainerEvent("c3", "created")]
    assert stream.cancelled


def test_cancel_from_another_thread_ends_an_idle_stream_promptly(cri: FakeCri) -> None:
    stream = ContainerEventStream(cri.endpoint, TIMEOUT)
    received: list[object] = []
    thread = consume(stream, received)
    assert cri.wait_for_subscribers(1)
    cancelled_at = time.monotonic()
    canceller = threading.Thread(target=stream.cancel)
    canceller.start()
    canceller.join(TIMEOUT)
    thread.join(TIMEOUT)
    ended_after = time.monotonic() - cancelled_at
    assert not thread.is_alive()
    assert received == []
    assert ended_after < PROMPT_S, f"the idle stream took {ended_after:.2f} s to end"


@pytest.fixture
def silent(tmp_path: Path) -> Iterator[socket.socket]:
    """A socket that accepts connections and never says a word (no HTTP/2: never ready)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "silent.sock"))
    listener.listen()
    listener.settimeout(TIMEOUT)
    try:
        yield listener
    finally:
        listener.close()


def test_cancel_while_connecting_ends_promptly(silent: socket.socket) -> None:
    stream = ContainerEventStream(silent.getsockname(), 60.0)
    received: list[object] = []
    thread = consume(stream, received)
    connection, _ = silent.accept()  # the stream is connecting now
    try:
        cancelled_at = time.monotonic()
        stream.cancel()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert time.monotonic() - cancelled_at < PROMPT_S
        assert received == []
    finally:
        connection.close()


def test_not_connected_within_the_timeout(silent: socket.socket) -> None:
    with pytest.raises(CriCallError) as caught:
        list(ContainerEventStream(silent.getsockname(), 0.3))
    assert caught.value.failure is Failure.TIMEOUT
    assert "not connected within 0.3s" in str(caught.value)


def test_no_event_loop_runs_between_events_and_a_new_stream_works_after_one_ended(
    cri: FakeCri,
) -> None:
    seen: list[object] = []

    def first_event_then_look() -> None:
        for event in ContainerEventStream(cri.endpoint, TIMEOUT):
            seen.append(event)
            try:  # what pyroute2's sync classes check before they agree to be created
                asyncio.get_running_loop()
                seen.append("a loop runs in the consuming thread")
            except RuntimeError:
                pass
            return

    for round_ in range(2):
        thread = threading.Thread(target=first_event_then_look, daemon=True)
        thread.start()
        # Streams are not replayed to late subscribers: push until this round's stream has one.
        while len(seen) == round_ and thread.is_alive():
            cri.push_event(f"c{round_}", "CONTAINER_STOPPED_EVENT")
            thread.join(0.05)
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    assert seen == [ContainerEvent("c0", "stopped"), ContainerEvent("c1", "stopped")]


def test_unknown_event_type_is_reported_as_unknown(cri: FakeCri) -> None:
    stream = ContainerEventStream(cri.endpoint, TIMEOUT)
    events = iter(stream)
    received: list[ContainerEvent] = []
    thread = threading.Thread(target=lambda: received.append(next(events)), daemon=True)
    thread.start()
    assert cri.wait_for_subscribers(1)
    cri.push_event("c9", 42)  # type: ignore[arg-type]
    thread.join(TIMEOUT)
    stream.cancel()
    assert received == [ContainerEvent("c9", "unknown")]


def test_cancel_before_iterating_yields_nothing(cri: FakeCri) -> None:
    stream = ContainerEventStream(cri.endpoint, TIMEOUT)
    stream.cancel()
    assert list(stream) == []
    assert cri.calls == []


def test_unimplemented_is_distinguishable(cri: FakeCri) -> None:
    cri.set_behaviour("GetContainerEvents", abort="UNIMPLEMENTED")
    with pytest.raises(CriUnimplementedError) as caught:
        list(ContainerEventStream(cri.endpoint, TIMEOUT))
    assert caught.value.failure is Failure.UNIMPLEMENTED
    assert "GetContainerEvents" in str(caught.value)


def test_missing_socket() -> None:
    with pytest.raises(CriCallError) as caught:
        list(ContainerEventStream("unix:///nonexistent/cri.sock", TIMEOUT))
    assert caught.value.failure is Failure.NO_SOCKET


def test_runtime_going_away_is_an_error_not_a_quiet_end(cri: FakeCri) -> None:
    stream = ContainerEventStream(cri.endpoint, TIMEOUT)
    received: list[object] = []
    thread = consume(stream, received)
    assert cri.wait_for_subscribers(1)
    cri.stop()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    [error] = received
    assert isinstance(error, CriCallError)
    assert error.failure is Failure.UNAVAILABLE


def test_garbage_event_is_malformed(cri: FakeCri) -> None:
    cri.set_behaviour("GetContainerEvents", garbage=True)
    with pytest.raises(CriCallError) as caught:
        next(iter(ContainerEventStream(cri.endpoint, TIMEOUT)))
    assert caught.value.failure is Failure.MALFORMED


# ---------------------------------------------------------------- the fake as a subprocess


@pytest.fixture
def fake_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    # A short directory of our own: unix socket paths are limited to 107 bytes.
    directory = str(tmp_path_factory.mktemp("cri", numbered=True))
    if len(directory) > 80:
        pytest.skip("temporary directory path too long for a unix socket")
    socket, state = os.path.join(directory, "s.sock"), os.path.join(directory, "state.json")
    sandbox, containers = im_pod(node="n1")
    write_state(state, {**empty_state(), "sandboxes": [sandbox], "containers": containers})
    process = subprocess.Popen([sys.executable, CRIFAKE, "--socket", socket, "--state", state],
                               stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    yield socket, state, process
    process.terminate()
    process.wait(10)


def test_subprocess_serves_and_reloads_its_state_file(
    fake_process: tuple[str, str, subprocess.Popen[str]],
) -> None:
    socket, state_path, _ = fake_process
    config = Config(cri_endpoints=(socket,), cri_timeout=TIMEOUT)
    [im] = query_runtime(config, NO_KUBELET).instance_managers
    assert (im.node, im.container_state) == ("n1", "running")

    state = {**empty_state(), "sandboxes": [], "containers": []}
    sandbox, containers = im_pod(node="n1", container_state="CONTAINER_EXITED")
    state.update(sandboxes=[sandbox], containers=containers)
    write_state(state_path, state)
    [im] = query_runtime(config, NO_KUBELET).instance_managers
    assert (im.sandbox_id, im.container_state) == (sandbox["id"], "exited")


def test_subprocess_pushes_events_appended_to_the_state_file(
    fake_process: tuple[str, str, subprocess.Popen[str]],
) -> None:
    socket, state_path, _ = fake_process
    stream = ContainerEventStream(socket, TIMEOUT)
    received: list[object] = []
    thread = consume(stream, received)
    state = empty_state()
    # The stream may not be subscribed yet: keep appending until one event gets through.
    while not received and thread.is_alive():
        state["events"].append({"container_id": "c1", "type": "CONTAINER_STOPPED_EVENT"})
        write_state(state_path, state)
        thread.join(0.05)
    stream.cancel()
    thread.join(TIMEOUT)
    assert received and received[0] == ContainerEvent("c1", "stopped")


# Run with the garbage collector off: only reference counting may free grpc's objects.
THREADS_AFTER_FAILURE = """
import gc, os, sys, time
gc.disable()
from lhsweep.cri import CriCallError
from lhsweep.cri.events import ContainerEventStream
def threads():
    return len(os.listdir("/proc/self/task"))
before = threads()
try:
    list(ContainerEventStream(sys.argv[1], 5.0))
except CriCallError as exc:
    print(exc.failure.value)
deadline = time.monotonic() + 10.0
while threads() > before and time.monotonic() < deadline:
    time.sleep(0.05)
print(before, threads())
"""


@pytest.mark.parametrize("code", ["UNIMPLEMENTED", "UNAVAILABLE"])
def test_a_failed_stream_leaves_no_grpc_threads_behind(
    fake_process: tuple[str, str, subprocess.Popen[str]], code: str,
) -> None:
    # The daemon polls after UNIMPLEMENTED: grpc core's threads left running would wake it
    # hundreds of times a minute, and an idle daemon may not collect garbage for hours.
    socket, state_path, _ = fake_process
    write_state(state_path, {**empty_state(), "behaviour": {"GetContainerEvents": {"abort": code}}})
    done = subprocess.run([sys.executable, "-c", THREADS_AFTER_FAILURE, socket], capture_output=True,
                          text=True, timeout=60, check=True, env=dict(os.environ, PYTHONPATH=REPO))
    failure, counts = done.stdout.splitlines()
    assert failure == code.lower()
    before, after = counts.split()
    assert after == before, f"{int(after) - int(before)} threads left after the stream failed"


def test_subprocess_drop_kills_the_runtime_mid_call(
    fake_process: tuple[str, str, subprocess.Popen[str]],
) -> None:
    socket, state_path, process = fake_process
    write_state(state_path, {**empty_state(), "behaviour": {"ListPodSandbox": {"drop": True}}})
    view = query_runtime(Config(cri_endpoints=(socket,), cri_timeout=TIMEOUT), NO_KUBELET)
    assert view.state is RuntimeState.UNKNOWN
    assert "ListPodSandbox: unavailable" in view.reason
    assert process.wait(TIMEOUT) == 3
