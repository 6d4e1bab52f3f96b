"""Users of block devices read from a fake /proc and sysfs: every mount namespace, open fds, loops."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.inventory import read_inventory, read_usage, users
from lhsweep.inventory.users import read_loops, read_mount_namespaces, read_openers
from lhsweep.model import DevNum, Mount, Opener, Unknown
from tests.hosttree import HostTree, fake_host


@pytest.fixture
def tree(tmp_path, monkeypatch: pytest.MonkeyPatch) -> HostTree:
    return fake_host(str(tmp_path), monkeypatch)


def test_a_mount_in_a_private_namespace_is_found_and_named(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1")
    tree.add_process(4242, "unshare", "4026532999", tree.read("/proc/1/mountinfo"))
    tree.add_mount(vol.dm_dev, "/mnt/private", pid=4242)
    mounts = read_mount_namespaces(HostRoot(tree.root))
    private = [m for m in mounts if m.dev == DevNum.parse(vol.dm_dev)]
    assert [(m.mount_point, m.namespace) for m in private] == [
        ("/mnt/private", "mount namespace of pid 4242 (unshare)")]
    root = [m for m in mounts if m.mount_point == "/"]
    assert len(root) == 1 and root[0].namespace == ""  # a copied mount is named once, as PID 1's


def test_no_mount_anywhere_is_unknown_not_empty(tree: HostTree) -> None:
    tree.write("/proc/1/mountinfo", "")
    with pytest.raises(HostReadError, match="mounts unknown: no mountinfo"):
        read_mount_namespaces(HostRoot(tree.root))
    inv = read_inventory(HostRoot(tree.root))
    assert isinstance(inv.mounts, Unknown)


def test_a_process_namespace_that_cannot_be_read_makes_mounts_unknown(tree: HostTree) -> None:
    tree.write("/proc/77", "not a directory")  # /proc/77 cannot be opened: neither gone nor read
    with pytest.raises(HostReadError, match=r"mounts unknown: /proc/77"):
        read_mount_namespaces(HostRoot(tree.root))


def test_openers_name_pid_and_command(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1")
    tree.add_process(300, "sleep", open_paths=("/dev/longhorn/pvc-1", "/proc/1/comm"))
    assert read_openers(HostRoot(tree.root)) == (Opener(DevNum.parse(vol.dm_dev), 300, "sleep"),)


def test_a_process_whose_leader_exited_is_read_through_its_threads(tree: HostTree) -> None:
    """pthread_exit() in the main thread: its fds and mount namespace live on in task/<tid>/."""
    vol = tree.add_longhorn_volume("pvc-1")
    tree.add_mount("9:9", "/host-root", pid=1)
    private = tree.read("/proc/1/mountinfo") + "901 22 9:7 / /private rw - ext4 /dev/x rw\n"
    tree.add_process(300, "spdk_tgt", mnt_ns="4026532999", mountinfo=private,
                     open_paths=("/dev/longhorn/pvc-1",), leader_exited_thread=301)
    host = HostRoot(tree.root)
    assert read_openers(host) == (Opener(DevNum.parse(vol.dm_dev), 300, "spdk_tgt"),)
    assert Mount(DevNum(9, 7), "/private", "/dev/x", "mount namespace of pid 300 (spdk_tgt)") in \
        read_mount_namespaces(host)


# The main thread exits through pthread_exit() while another thread holds the process (and its fd).
LEADER_EXITS = """
import ctypes, os, sys, threading, time
fd = os.open(sys.argv[1], os.O_RDONLY)
threading.Thread(target=time.sleep, args=(60,)).start()
print("ready", flush=True)
ctypes.CDLL(None).pthread_exit(None)
"""


@pytest.mark.process
def test_a_real_process_whose_main_thread_exited_is_still_seen(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """On the real /proc: the zombie leader's fd/ is empty, its thread's still has the block fd."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mknod)")
    number = next((n for n in sorted(os.listdir("/sys/dev/block")) if _opens(n, tmp_path)), None)
    if number is None:
        pytest.skip("no block device here that opens read-only")
    major, minor = (int(x) for x in number.split(":"))
    node = tmp_path / "disk"
    os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(major, minor))
    child = subprocess.Popen([sys.executable, "-c", LEADER_EXITS, str(node)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 10
        while "Z (zombie)" not in Path(f"/proc/{child.pid}/status").read_text():
            assert time.monotonic() < deadline, "the main thread did not exit"
            time.sleep(0.01)
        assert os.listdir(f"/proc/{child.pid}/fd") == []
        # Only this process: the sandbox running the tests may refuse other processes' tables.
        monkeypatch.setattr(users, "_pids", lambda host: [str(child.pid)])
        assert [(o.dev, o.pid) for o in read_openers(HostRoot("/"))] == [(DevNum(major, minor), child.pid)]
        # Its namespace's mounts, read through the thread (else: no process lists any mount).
        assert any(m.mount_point == "/" for m in read_mount_namespaces(HostRoot("/")))
    finally:
        child.kill()
        child.wait()


def _opens(number: str, tmp_path: Path) -> bool:
    """True when a block node of `number` opens read-only here."""
    major, minor = (int(x) for x in number.split(":"))
    probe = tmp_path / f"probe-{major}-{minor}"
    try:
        os.mknod(probe, stat.S_IFBLK | 0o600, os.makedev(major, minor))
        os.close(os.open(probe, os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)
    return True


def test_a_process_gone_between_listing_and_reading_is_skipped(tree: HostTree) -> None:
    """A /proc/<pid> without fd/, ns/mnt or task/ (it exited meanwhile) is no error and no user."""
    tree.add_process(300, "gone")
    for path in ("/proc/300/fd", "/proc/300/ns/mnt", "/proc/300/mountinfo"):
        (os.rmdir if os.path.isdir(tree.p(path)) else os.unlink)(tree.p(path))
    host = HostRoot(tree.root)
    assert read_openers(host) == ()
    assert all(m.namespace == "" for m in read_mount_namespaces(host))


def test_an_unreadable_fd_table_makes_openers_unknown(tree: HostTree) -> None:
    tree.add_process(300, "secret")
    os.rmdir(tree.p("/proc/300/fd"))
    tree.write("/proc/300/fd", "")  # open(O_DIRECTORY) fails with ENOTDIR: not "gone"
    usage = read_usage(HostRoot(tree.root))
    assert isinstance(usage.openers, Unknown) and "/proc/300/fd" in usage.openers.reason
    assert not isinstance(usage.mounts, Unknown)


def test_loop_backings_resolve_to_block_devices_or_unknown(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1")
    tree.add_loop("/dev/longhorn/pvc-1")
    tree.add_loop("/var/tmp/image")
    tree.add_loop("/dev/longhorn/gone (deleted)")
    loops = {loop.backing_file: loop.backing for loop in read_loops(HostRoot(tree.root))}
    assert loops["/dev/longhorn/pvc-1"] == DevNum.parse(vol.dm_dev)
    assert loops["/var/tmp/image"] == DevNum(0, 0)
    assert loops["/dev/longhorn/gone (deleted)"] is None
