"""ContainerEventStream against the fake runtime, and the fake runtime run as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from lhsweep.config import Config
from lhsweep.cri import (
    ContainerEvent,
    ContainerEventStream,
    CriCallError,
    CriUnimplementedError,
    Failure,
    query_runtime,
)
from lhsweep.model import RuntimeState
from tests.crifake import FakeCri, empty_state, im_pod, write_state

TIMEOUT = 5.0
CRIFAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crifake.py")


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
                               stdout=subprocess.PIPE, text=True)
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
    [im] = query_runtime(config).instance_managers
    assert (im.node, im.container_state) == ("n1", "running")

    state = {**empty_state(), "sandboxes": [], "containers": []}
    sandbox, containers = im_pod(node="n1", container_state="CONTAINER_EXITED")
    state.update(sandboxes=[sandbox], containers=containers)
    write_state(state_path, state)
    [im] = query_runtime(config).instance_managers
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


def test_subprocess_drop_kills_the_runtime_mid_call(
    fake_process: tuple[str, str, subprocess.Popen[str]],
) -> None:
    socket, state_path, process = fake_process
    write_state(state_path, {**empty_state(), "behaviour": {"ListPodSandbox": {"drop": True}}})
    view = query_runtime(Config(cri_endpoints=(socket,), cri_timeout=TIMEOUT))
    assert view.state is RuntimeState.UNKNOWN
    assert "ListPodSandbox: unavailable" in view.reason
    assert process.wait(TIMEOUT) == 3
