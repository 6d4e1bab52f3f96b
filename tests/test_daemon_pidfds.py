"""The im-exit trigger: pidfds of instance-managers' processes, proven by their host cgroup.

The "instance-manager" is a real child process (`sleep`); the host root is a test tree whose
/proc/<child pid>/cgroup names (or does not name) the container, and whose /proc/1/ns/pid is
(or is not) this process's own pid namespace.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from lhsweep.config import Config
from lhsweep.cri import query_runtime
from lhsweep.daemon.cri_watch import CriWatcher, open_event_stream
from lhsweep.daemon.pidfds import ExitWatch, open_pidfd, same_pid_namespace
from lhsweep.host import HostRoot
from lhsweep.model import RuntimeView
from tests.crifake import FakeCri, im_pod

pytestmark = pytest.mark.process  # child processes, real pidfds, a gRPC server

POLL_S = 30.0  # the poll interval: an im-exit well within it came from the pidfd
PROMPT_S = 5.0  # an exit is seen in milliseconds; the bound allows for a loaded machine
QUIET_S = 1.0  # how long a test waits to be sure no trigger comes
TIMEOUT = 5.0


def pidfds_open() -> int:
    """How many pidfds this process holds."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[pidfd]"
        except OSError:
            continue  # the listing's own fd, closed by now
    return count


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait(TIMEOUT)


def host_tree(root: Path, *, same_namespace: bool = True) -> HostRoot:
    """A host root whose /proc/1/ns/pid is ours (or another namespace's)."""
    ns = root / "proc" / "1" / "ns"
    ns.mkdir(parents=True)
    (ns / "pid").symlink_to(os.readlink("/proc/self/ns/pid") if same_namespace else "pid:[1]")
    return HostRoot(str(root))


def cgroup(root: Path, pid: int, text: str) -> None:
    """The host's /proc/<pid>/cgroup in the test tree."""
    directory = root / "proc" / str(pid)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cgroup").write_text(text)


def systemd_cgroup(container_id: str) -> str:
    """What containerd's systemd cgroup driver gives a container's processes."""
    return ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/"
            f"cri-containerd-{container_id}.scope\n")


class Lookup:
    """A PidLookup answering fixed pids, recording what it was asked."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.asked: list[list[str]] = []

    def __call__(self, endpoint: str, timeout: float, ids: Iterable[str]) -> dict[str, int]:
        self.asked.append(list(ids))
        return {i: self.pids[i] for i in self.asked[-1] if i in self.pids}


# ---------------------------------------------------------------- ExitWatch


def test_a_proven_process_is_watched_and_its_exit_reported(
    tmp_path: Path, child: subprocess.Popen[bytes],
) -> None:
    host = host_tree(tmp_path)
    cgroup(tmp_path, child.pid, systemd_cgroup("c1"))
    exits = ExitWatch(host, Lookup({"c1": child.pid}))
    stop_r, stop_w = os.pipe()
    try:
        exits.track("unix:///cri.sock", TIMEOUT, frozenset({"c1", "c2"}))
        assert exits.watched == {"c1"} and pidfds_open() == 1
        assert exits.wait(stop_r, 0.05) == []
        child.kill()
        started = time.monotonic()
        assert exits.wait(stop_r, POLL_S) == ["c1"]
        assert time.monotonic() - started < PROMPT_S
        assert exits.watched == frozenset() and pidfds_open() == 0
    finally:
        exits.close()
        os.close(stop_r)
        os.close(stop_w)


def test_the_stop_fd_ends_the_wait(tmp_path: Path, child: subprocess.Popen[bytes]) -> None:
    host = host_tree(tmp_path)
    cgroup(tmp_path, child.pid, systemd_cgroup("c1"))
    exits = ExitWatch(host, Lookup({"c1": child.pid}))
    stop_r, stop_w = os.pipe()
    try:
        exits.track("unix:///cri.sock", TIMEOUT, frozenset({"c1"}))
        os.write(stop_w, b"x")
        started = time.monotonic()
        assert exits.wait(stop_r, POLL_S) == []
        assert time.monotonic() - started < PROMPT_S
        assert exits.watched == {"c1"}
    finally:
        exits.close()
        os.close(stop_r)
        os.close(stop_w)
    assert pidfds_open() == 0


@pytest.mark.parametrize("text", [
    systemd_cgroup("c9"),  # another container's process now has that pid
    "0::/system.slice/cron.service\n",
    "",
])
def test_a_pid_whose_cgroup_does_not_name_the_container_is_not_watched(
    tmp_path: Path, child: subprocess.Popen[bytes], text: str,
) -> None:
    host = host_tree(tmp_path)
    cgroup(tmp_path, child.pid, text)
    exits = ExitWatch(host, Lookup({"c1": child.pid}))
    exits.track("unix:///cri.sock", TIMEOUT, frozenset({"c1"}))
    assert exits.watched == frozenset() and pidfds_open() == 0


def test_a_pid_without_a_readable_cgroup_is_not_watched(
    tmp_path: Path, child: subprocess.Popen[bytes],
) -> None:
    host = host_tree(tmp_path)
    assert open_pidfd(host, "c1", child.pid) is None  # no /proc/<pid>/cgroup in the tree
    (tmp_path / "proc" / str(child.pid) / "cgroup").mkdir(parents=True)  # unreadable as text
    assert open_pidfd(host, "c1", child.pid) is None
    assert pidfds_open() == 0


def test_a_pid_with_no_process_or_no_pid_is_not_watched(tmp_path: Path) -> None:
    host = host_tree(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait(TIMEOUT)
    cgroup(tmp_path, gone.pid, systemd_cgroup("c1"))
    cgroup(tmp_path, 1, systemd_cgroup("c1"))
    assert open_pidfd(host, "c1", gone.pid) is None
    assert open_pidfd(host, "c1", 1) is None and open_pidfd(host, "c1", 0) is None
    assert open_pidfd(host, "", gone.pid) is None


def test_another_pid_namespace_means_no_pidfds_and_no_questions(
    tmp_path: Path, child: subprocess.Popen[bytes],
) -> None:
    host = host_tree(tmp_path, same_namespace=False)
    cgroup(tmp_path, child.pid, systemd_cgroup("c1"))
    lookup = Lookup({"c1": child.pid})
    exits = ExitWatch(host, lookup)
    exits.track("unix:///cri.sock", TIMEOUT, frozenset({"c1"}))
    assert not same_pid_namespace(host)
    assert exits.watched == frozenset() and lookup.asked == [] and pidfds_open() == 0


def test_an_unreadable_host_pid_namespace_means_no_pidfds(tmp_path: Path) -> None:
    assert not same_pid_namespace(HostRoot(str(tmp_path)))  # no proc/1/ns/pid at all
    assert same_pid_namespace(host_tree(tmp_path / "host"))


def test_the_same_set_is_not_asked_again_and_a_new_one_replaces_the_pidfds(
    tmp_path: Path, child: subprocess.Popen[bytes],
) -> None:
    host = host_tree(tmp_path)
    cgroup(tmp_path, child.pid, systemd_cgroup("c1"))
    lookup = Lookup({"c1": child.pid})
    exits = ExitWatch(host, lookup)
    try:
        exits.track("unix:///cri.sock", TIMEOUT, frozenset({"c1"}))
        exits.track("unix:///cri.sock", TIMEOUT, frozenset({"c1"}))
        assert lookup.asked == [["c1"]] and exits.watched == {"c1"}
        exits.track("unix:///cri.sock", TIMEOUT, frozenset({"c2"}))
        assert lookup.asked == [["c1"], ["c2"]]
        assert exits.watched == frozenset() and pidfds_open() == 0
    finally:
        exits.close()


def test_a_failing_lookup_means_no_pidfds(tmp_path: Path) -> None:
    def broken(endpoint: str, timeout: float, ids: Iterable[str]) -> dict[str, int]:
        raise RuntimeError("a bug")

    exits = ExitWatch(host_tree(tmp_path), broken)
    exits.track("unix:///cri.sock", TIMEOUT, frozenset({"c1"}))
    assert exits.watched == frozenset()


# ---------------------------------------------------------------- the polling watcher


def _query(config: Config) -> RuntimeView:
    return query_runtime(config, HostRoot("/nonexistent-host-root"))


def _wait_readable(fd_owner: object, timeout: float) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(fd_owner, selectors.EVENT_READ)  # type: ignore[arg-type]
        return bool(sel.select(timeout))


def _wait_watched(exits: ExitWatch, expected: frozenset[str]) -> bool:
    deadline = time.monotonic() + 2 * TIMEOUT
    while exits.watched != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return exits.watched == expected


@pytest.fixture
def polling_runtime() -> Iterator[tuple[FakeCri, str, Config]]:
    """A runtime without an event stream, running one instance-manager container."""
    with FakeCri() as fake:
        fake.set_behaviour("GetContainerEvents", abort="UNIMPLEMENTED")
        sandbox, containers = im_pod()
        fake.add_pod(sandbox, containers)
        yield fake, containers[0]["id"], Config(cri_endpoints=(fake.endpoint,),
                                                cri_timeout=TIMEOUT, cri_poll_interval=POLL_S)


def _started_watcher(tmp_path: Path, child: subprocess.Popen[bytes], fake: FakeCri, container_id: str,
                     config: Config, cgroup_names: str) -> tuple[CriWatcher, ExitWatch]:
    """A started polling watcher; the runtime names `child` as the container's process, whose host
    cgroup names `cgroup_names`."""
    fake.set_pid(container_id, child.pid)
    cgroup(tmp_path, child.pid, systemd_cgroup(cgroup_names))
    exits = ExitWatch(host_tree(tmp_path))
    watcher = CriWatcher(config, open_event_stream, _query, exits=exits)
    watcher.observed(_query(config))
    watcher.start()
    return watcher, exits


def _exited(fake: FakeCri) -> None:
    """The runtime reports the instance-manager's container exited (the shim reaped it)."""
    state = fake.state()
    state["containers"][0]["state"] = "CONTAINER_EXITED"
    fake.set_state(state)


@pytest.mark.parametrize("runtime_lag_s", [0.0, 0.5])
def test_polling_watcher_fires_im_exit_promptly_once_the_runtime_reports_the_exit(
    tmp_path: Path, child: subprocess.Popen[bytes], polling_runtime: tuple[FakeCri, str, Config],
    runtime_lag_s: float,
) -> None:
    """The pidfd wakes the watcher at the exit; it asks the runtime at once and then every
    EXIT_REPOLL_S, so the trigger follows the runtime's own record (here late by `runtime_lag_s`)."""
    fake, container_id, config = polling_runtime
    watcher, exits = _started_watcher(tmp_path, child, fake, container_id, config, container_id)
    try:
        assert _wait_watched(exits, frozenset({container_id}))
        assert watcher.mode == "polling" and watcher.handle() is None
        child.kill()
        killed = time.monotonic()
        time.sleep(runtime_lag_s)
        _exited(fake)
        assert _wait_readable(watcher, PROMPT_S), "no trigger after the process was killed"
        assert time.monotonic() - killed < PROMPT_S
        assert watcher.handle() == "im-exit"
    finally:
        watcher.close()


def test_an_exit_the_runtime_does_not_report_raises_no_trigger(
    tmp_path: Path, child: subprocess.Popen[bytes], polling_runtime: tuple[FakeCri, str, Config],
) -> None:
    """The exit only hastens the questions: what the runtime answers decides (it still says running)."""
    fake, container_id, config = polling_runtime
    watcher, exits = _started_watcher(tmp_path, child, fake, container_id, config, container_id)
    try:
        assert _wait_watched(exits, frozenset({container_id}))
        asked = len(fake.calls)
        child.kill()
        assert not _wait_readable(watcher, QUIET_S)
        assert len(fake.calls) > asked + 3, "the runtime was not asked again and again after the exit"
    finally:
        watcher.close()


def test_polling_watcher_stays_quiet_when_the_cgroup_names_another_container(
    tmp_path: Path, child: subprocess.Popen[bytes], polling_runtime: tuple[FakeCri, str, Config],
) -> None:
    fake, container_id, config = polling_runtime
    watcher, exits = _started_watcher(tmp_path, child, fake, container_id, config, "0" * 64)
    try:
        deadline = time.monotonic() + 2 * TIMEOUT
        while ("ContainerStatus" not in [c for c, _ in fake.calls]
               and time.monotonic() < deadline):
            time.sleep(0.01)
        child.kill()
        assert not _wait_readable(watcher, QUIET_S)
        assert exits.watched == frozenset()
    finally:
        watcher.close()


def test_closing_the_watcher_closes_its_pidfds_promptly(
    tmp_path: Path, child: subprocess.Popen[bytes], polling_runtime: tuple[FakeCri, str, Config],
) -> None:
    fake, container_id, config = polling_runtime
    watcher, exits = _started_watcher(tmp_path, child, fake, container_id, config, container_id)
    try:
        assert _wait_watched(exits, frozenset({container_id})) and pidfds_open() == 1
    finally:
        started = time.monotonic()
        watcher.close(timeout=PROMPT_S)
    assert time.monotonic() - started < PROMPT_S / 2, "the poll wait did not end at close()"
    assert exits.watched == frozenset() and pidfds_open() == 0


def test_an_exited_container_is_not_watched(
    tmp_path: Path, child: subprocess.Popen[bytes], polling_runtime: tuple[FakeCri, str, Config],
) -> None:
    fake, container_id, config = polling_runtime
    state = fake.state()
    state["containers"][0]["state"] = "CONTAINER_EXITED"
    fake.set_state(state)
    fake.set_pid(container_id, child.pid)
    cgroup(tmp_path, child.pid, systemd_cgroup(container_id))
    lookup = Lookup({container_id: child.pid})
    exits = ExitWatch(host_tree(tmp_path), lookup)
    watcher = CriWatcher(config, open_event_stream, _query, exits=exits)
    watcher.observed(_query(config))
    watcher.start()
    try:
        assert not _wait_readable(watcher, QUIET_S)
        assert lookup.asked == [] and exits.watched == frozenset()
    finally:
        watcher.close()
