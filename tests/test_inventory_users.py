"""Users of block devices read from a fake /proc and sysfs: every mount namespace, open fds, loops."""

from __future__ import annotations

import os

import pytest

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.inventory import read_inventory, read_usage
from lhsweep.inventory.users import read_loops, read_mount_namespaces, read_openers
from lhsweep.model import DevNum, Opener, Unknown
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
