"""Trigger sources and timers: debounce, backoff, the pods-dir inotify watch, the uevent filter."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from lhsweep.daemon.inotify import IN_CREATE, IN_Q_OVERFLOW, PodDirWatcher, parse_events
from lhsweep.daemon.timers import MAX_WAIT_WINDOWS, Backoff, Debouncer
from lhsweep.daemon.uevents import UeventWatcher, is_relevant, open_uevent_socket

REPO = Path(__file__).resolve().parents[1]


def test_debounce_fires_after_quiet_window_and_collects_reasons() -> None:
    d = Debouncer(0.25)
    d.trigger("pod-dir", 10.0)
    d.trigger("uevent", 10.1)
    assert not d.due(10.3)
    assert d.due(10.35)
    assert d.take() == ("pod-dir", "uevent")
    assert d.deadline is None and not d.due(100.0)


def test_debounce_caps_the_wait_under_a_steady_trickle() -> None:
    d = Debouncer(0.25)
    t = 0.0
    while not d.due(t):
        d.trigger("pod-dir", t)
        t += 0.1
    assert t == pytest.approx(0.25 * MAX_WAIT_WINDOWS, abs=0.11)


def test_backoff_doubles_to_a_cap_and_resets() -> None:
    b = Backoff(1.0, 5.0)
    assert [b.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    b.reset()
    assert b.next_delay() == 1.0


def test_parse_events_decodes_names_and_overflow() -> None:
    name = b"pod-1\0\0\0"
    data = (struct.pack("iIII", 3, IN_CREATE, 0, len(name)) + name
            + struct.pack("iIII", -1, IN_Q_OVERFLOW, 0, 0))
    events = parse_events(data)
    assert [(e.wd, e.mask, e.name) for e in events] == [(3, IN_CREATE, "pod-1"),
                                                        (-1, IN_Q_OVERFLOW, "")]


def test_pod_dir_events_on_the_pods_directory(tmp_path: Path) -> None:
    pods = tmp_path / "kubelet" / "pods"
    pods.mkdir(parents=True)
    watcher = PodDirWatcher(str(pods))
    try:
        assert watcher.on_target
        assert watcher.handle() is None
        (pods / "uid-1").mkdir()
        assert watcher.handle() == "pod-dir"
        (pods / "uid-1").rename(tmp_path / "moved-away")
        assert watcher.handle() == "pod-dir"
        (pods / "some-file").write_text("x")  # a file is a change of the directory too
        assert watcher.handle() == "pod-dir"
    finally:
        watcher.close()


def test_missing_pods_dir_watches_nearest_parent_until_it_appears(tmp_path: Path) -> None:
    root = tmp_path / "var"
    root.mkdir()
    target = root / "lib" / "kubelet" / "pods"
    watcher = PodDirWatcher(str(target))
    try:
        assert watcher.watched == str(root)
        (root / "unrelated").mkdir()
        assert watcher.handle() is None
        (root / "lib").mkdir()
        assert watcher.handle() is None and watcher.watched == str(root / "lib")
        (root / "lib" / "kubelet").mkdir()
        (root / "lib" / "kubelet" / "pods").mkdir()
        # Both levels may be created before the watch on lib/ sees kubelet/: arm() goes down.
        assert watcher.handle() == "pods-dir-appeared"
        assert watcher.on_target
        (target / "uid-2").mkdir()
        assert watcher.handle() == "pod-dir"
    finally:
        watcher.close()


def test_lost_pods_dir_means_resync_and_parent_watch(tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    pods.mkdir()
    watcher = PodDirWatcher(str(pods))
    try:
        pods.rmdir()
        assert watcher.handle() == "pods-dir-lost"
        assert watcher.watched == str(tmp_path)
        pods.mkdir()
        assert watcher.handle() == "pods-dir-appeared"
    finally:
        watcher.close()


@pytest.mark.process
def test_queue_overflow_means_resync(tmp_path: Path) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 20000:
        pytest.skip(f"max_queued_events is {limit}: too many files to overflow it quickly")
    pods = tmp_path / "pods"
    pods.mkdir()
    watcher = PodDirWatcher(str(pods))
    try:
        for i in range(limit + 10):
            os.close(os.open(pods / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o600))
        assert watcher.handle() == "inotify-overflow"
        assert watcher.on_target
        (pods / "after").mkdir()
        assert watcher.handle() == "pod-dir"
    finally:
        watcher.close()


@pytest.mark.parametrize(("props", "relevant"), [
    ({"ACTION": "add", "SUBSYSTEM": "block", "DEVNAME": "dm-3"}, True),
    ({"ACTION": "remove", "SUBSYSTEM": "block", "DEVNAME": "nvme1n2"}, True),
    ({"ACTION": "change", "SUBSYSTEM": "block", "DEVNAME": "ublkb0"}, True),
    ({"ACTION": "add", "SUBSYSTEM": "block", "DEVPATH": "/devices/virtual/block/dm-0"}, True),
    ({"ACTION": "add", "SUBSYSTEM": "nvme", "DEVNAME": "nvme0"}, True),
    ({"ACTION": "remove", "SUBSYSTEM": "nvme-subsystem"}, True),
    ({"ACTION": "add", "SUBSYSTEM": "block", "DEVNAME": "sda"}, False),
    ({"ACTION": "add", "SUBSYSTEM": "block", "DEVNAME": "loop0"}, False),
    ({"ACTION": "add", "SUBSYSTEM": "block", "DEVNAME": "nvme0n1p1"}, False),
    ({"ACTION": "add", "SUBSYSTEM": "net", "INTERFACE": "dm-1"}, False),
    ({"ACTION": "bind", "SUBSYSTEM": "nvme"}, False),
    ({}, False),
])
def test_uevent_filter(props: dict[str, str], relevant: bool) -> None:
    assert is_relevant(props) is relevant


class PipeSource:
    """A pipe-backed stand-in for the uevent socket: readable when the test queues messages."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.queued: list[Any] = []

    def push(self, item: Any) -> None:
        self.queued.append(item)
        os.write(self.write_fd, b"x")

    def bind(self) -> None:
        return None

    def fileno(self) -> int:
        return self.read_fd

    def get(self) -> Iterable[Mapping[str, Any]]:
        os.read(self.read_fd, 1)
        item = self.queued.pop(0)
        if isinstance(item, Exception):
            raise item
        return [item]

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


def test_uevent_watcher_names_relevant_events_and_overflow() -> None:
    source = PipeSource()
    watcher = UeventWatcher(lambda: source)
    assert watcher.fileno() == source.read_fd
    source.push({"ACTION": "add", "SUBSYSTEM": "block", "DEVNAME": "sdb"})
    assert watcher.handle() is None
    source.push({"ACTION": "add", "SUBSYSTEM": "block", "DEVNAME": "dm-7"})
    assert watcher.handle() == "uevent"
    source.push(OSError(105, "No buffer space available"))
    assert watcher.handle() == "uevent-overflow"
    watcher.close()


@pytest.mark.process
def test_real_uevent_socket_filters_an_unrelated_kernel_event() -> None:
    try:
        sock = open_uevent_socket()
    except OSError as exc:
        pytest.skip(f"no uevent socket here: {exc}")
    watcher = UeventWatcher(lambda: sock)
    try:
        try:
            Path("/sys/devices/virtual/net/lo/uevent").write_text("change")
        except OSError as exc:
            pytest.skip(f"cannot synthesize a uevent: {exc}")
        import select  # noqa: PLC0415

        readable, _, _ = select.select([watcher], [], [], 5)
        assert readable, "the kernel's change event for lo did not arrive"
        assert watcher.handle() is None  # a network interface is not a trigger
        rcvbuf = socket.socket(fileno=os.dup(watcher.fileno()))
        assert rcvbuf.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 2 * 1024 * 1024
        rcvbuf.close()
    finally:
        watcher.close()


@pytest.mark.process
def test_the_uevent_socket_class_loads_without_the_whole_pyroute2_package() -> None:
    """pyroute2/__init__ (every netlink family) is not run for one socket class, and a later plain
    `import pyroute2` still gets the whole package with that very class."""
    code = (
        "import sys\n"
        "from lhsweep.daemon.uevents import _uevent_socket_class\n"
        "cls = _uevent_socket_class()\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('pyroute2'))\n"
        "assert 'pyroute2' not in loaded and 'pyroute2.iproute' not in loaded, loaded\n"
        "import pyroute2\n"
        "assert pyroute2.UeventSocket is cls and hasattr(pyroute2, 'IPRoute')\n"
        "print(cls.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pyroute2.netlink.uevent"
