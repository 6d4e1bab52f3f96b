"""Inventory on built host trees: every kind of device, /dev/longhorn entries, broken sysfs, mounts."""

from __future__ import annotations

import os

import pytest

from lhsweep.host import HostRoot
from lhsweep.inventory import read_inventory, read_node, read_subsystems
from lhsweep.inventory.mounts import parse_mountinfo
from lhsweep.model import DevNum, DmDevice, Inventory, NodeType, Unknown
from tests.hosttree import FAKE_KEY, LONGHORN_PREFIX, HostTree, fake_host


@pytest.fixture
def tree(tmp_path, monkeypatch: pytest.MonkeyPatch) -> HostTree:
    return fake_host(str(tmp_path), monkeypatch)


def inventory(tree: HostTree) -> Inventory:
    return read_inventory(HostRoot(tree.root))


def dm_named(inv: Inventory, name: str) -> DmDevice:
    (found,) = [d for d in inv.dm_devices if d.name == name]
    return found


def dev(text: str) -> DevNum:
    return DevNum.parse(text)


def test_longhorn_volume_shows_dm_node_subsystem_and_block_devices(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1")
    inv = inventory(tree)
    assert inv.problems == ()
    dm = dm_named(inv, "pvc-1")
    assert (dm.dev, dm.uuid, dm.suspended, dm.open_count, dm.deferred_remove) == (
        dev(vol.dm_dev), "", False, 0, False)
    assert dm.targets is not None and len(dm.targets) == 1
    assert (dm.targets[0].target_type, dm.targets[0].backing) == ("linear", dev(vol.backing_dev))
    assert dm.dangling_slaves == () and dm.holders == ()
    (node,) = inv.nodes
    assert (node.name, node.node_type, node.rdev) == ("pvc-1", NodeType.BLOCK, dev(vol.dm_dev))
    (subsystem,) = inv.subsystems
    assert subsystem.nqn == f"{LONGHORN_PREFIX}volume-pvc-1" and subsystem.is_longhorn
    assert [(c.name, c.state) for c in subsystem.controllers] == [(vol.controller, "live")]
    assert [(n.name, n.dev, n.holders) for n in subsystem.namespaces] == [
        (vol.backing, dev(vol.backing_dev), (vol.dm,))]
    names = {b.name for b in inv.block_devices}
    assert {vol.dm, vol.backing} <= names
    assert not any("c" in n[4:] for n in names if n.startswith("nvme")), "hidden path disk has no number"


def test_dead_target_leaves_a_dangling_slave_and_a_held_subsystem(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1", backing_gone=True)
    inv = inventory(tree)
    dm = dm_named(inv, "pvc-1")
    assert dm.targets is not None and dm.targets[0].backing == dev(vol.backing_dev)
    assert len(dm.dangling_slaves) == 1 and f"/{vol.subsystem}/" in dm.dangling_slaves[0]
    (subsystem,) = inv.subsystems
    assert (subsystem.name, subsystem.controllers, subsystem.namespaces) == (vol.subsystem, (), ())
    assert dev(vol.backing_dev) not in {b.dev for b in inv.block_devices}


def test_controller_state_while_reconnecting(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1")
    tree.set_controller_state(vol.controller, "connecting")
    (subsystem,), _ = read_subsystems(HostRoot(tree.root))
    assert subsystem.controllers[0].state == "connecting"


def test_encrypted_mounted_volume_is_held_open_and_mounted(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1", encrypted=True, mounted=True)
    inv = inventory(tree)
    linear, crypt = dm_named(inv, "pvc-1"), dm_named(inv, "pvc-1-encrypted")
    assert linear.holders == (tree.dm("pvc-1-encrypted")["kernel"],) and linear.open_count == 1
    assert crypt.open_count == 1
    assert crypt.uuid.startswith("CRYPT-LUKS2-") and crypt.uuid.endswith("-pvc-1-encrypted")
    assert crypt.targets is not None and crypt.targets[0].backing == dev(vol.dm_dev)
    assert [m.dev for m in inv.mounts if "kubelet" in m.mount_point] == [dev(vol.crypt_dev)]
    assert FAKE_KEY not in repr(inv)


def test_foreign_devices_keep_what_tells_them_apart(tree: HostTree) -> None:
    v1 = tree.add_v1_encrypted_volume("pvc-v1")
    lvm = tree.add_lvm()
    mpath = tree.add_multipath()
    plain = tree.add_plain_linear_on_loop()
    inv = inventory(tree)
    assert inv.problems == ()
    crypt = dm_named(inv, "pvc-v1")
    assert crypt.targets is not None and crypt.targets[0].target_type == "crypt"
    assert crypt.targets[0].backing == dev(v1.backing_dev) and crypt.open_count == 1
    assert [n.rdev for n in inv.nodes if n.name == "pvc-v1"] == [dev(v1.backing_dev)]
    assert dm_named(inv, lvm.name).uuid.startswith("LVM-")
    multipath = dm_named(inv, mpath.name)
    assert multipath.targets is not None and multipath.targets[0].target_type == "multipath"
    assert multipath.targets[0].backing is None
    linear = dm_named(inv, plain.name)
    assert linear.targets is not None and linear.targets[0].backing == dev(plain.backing_dev)
    assert {b.name for b in inv.block_devices} >= {plain.backing, lvm.backing, v1.backing}


def test_ublk_volume(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-u", ublk=True)
    inv = inventory(tree)
    assert [(u.name, u.dev) for u in inv.ublk_devices] == [(vol.backing, dev(vol.backing_dev))]
    assert inv.subsystems == ()
    targets = dm_named(inv, "pvc-u").targets
    assert targets is not None and targets[0].backing == dev(vol.backing_dev)


def test_dm_flags_from_the_control_interface(tree: HostTree) -> None:
    tree.add_longhorn_volume("pvc-1", deferred_remove=True, open_count=2)
    tree.add_longhorn_volume("pvc-2", suspended=True)
    inv = inventory(tree)
    one, two = dm_named(inv, "pvc-1"), dm_named(inv, "pvc-2")
    assert (one.deferred_remove, one.open_count, one.suspended) == (True, 2, False)
    assert (two.deferred_remove, two.suspended) == (False, True)


def test_dev_longhorn_entries_are_described_never_followed(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1")
    tree.add_dangling_node("pvc-gone", "253:99")
    tree.add_node_symlink("to-passwd", "/etc/passwd")
    tree.add_node_symlink("to-node", "pvc-1")
    tree.add_node_file("notes", "hello")
    os.mkdir(tree.p("/dev/longhorn/subdir"))
    os.mkfifo(tree.p("/dev/longhorn/fifo"))
    nodes = {n.name: n for n in inventory(tree).nodes}
    assert {k: (n.node_type, n.rdev) for k, n in nodes.items()} == {
        "pvc-1": (NodeType.BLOCK, dev(vol.dm_dev)),
        "pvc-gone": (NodeType.BLOCK, DevNum(253, 99)),
        "to-passwd": (NodeType.SYMLINK, None),
        "to-node": (NodeType.SYMLINK, None),
        "notes": (NodeType.REGULAR, None),
        "subdir": (NodeType.DIRECTORY, None),
        "fifo": (NodeType.OTHER, None),
    }
    st = os.lstat(tree.p("/dev/longhorn/to-node"))
    assert (nodes["to-node"].inode, nodes["to-node"].ctime_ns) == (st.st_ino, st.st_ctime_ns)


def test_read_node(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1")
    tree.add_node_symlink("lnk", "pvc-1")
    host = HostRoot(tree.root)
    node = read_node(host, "pvc-1")
    assert node is not None and node.rdev == dev(vol.dm_dev)
    link = read_node(host, "lnk")
    assert link is not None and link.node_type is NodeType.SYMLINK
    assert read_node(host, "absent") is None
    for bad in ("", "..", "a/b"):
        with pytest.raises(ValueError):
            read_node(host, bad)


def test_dev_longhorn_as_a_symlink_is_not_followed(tree: HostTree) -> None:
    tree.add_longhorn_volume("pvc-1")
    os.rename(tree.p("/dev/longhorn"), tree.p("/dev/elsewhere"))
    os.symlink("elsewhere", tree.p("/dev/longhorn"))
    inv = inventory(tree)
    assert isinstance(inv.nodes, Unknown) and inv.nodes.reason.startswith("/dev/longhorn: cannot open")
    assert any(p.startswith("/dev/longhorn: cannot open") for p in inv.problems)


def test_no_dev_longhorn_means_no_nodes(tree: HostTree) -> None:
    os.rmdir(tree.p("/dev/longhorn"))
    inv = inventory(tree)
    assert inv.nodes == () and inv.problems == ()


def without_dm_control(monkeypatch: pytest.MonkeyPatch) -> None:
    """No dmsetup on PATH (and no dm ioctl in a tree): name, uuid and suspended come from sysfs."""
    monkeypatch.setenv("PATH", "/nonexistent")


def test_garbage_and_missing_sysfs_files_become_problems(tree: HostTree, monkeypatch) -> None:
    one = tree.add_longhorn_volume("pvc-1")
    two = tree.add_longhorn_volume("pvc-2")
    three = tree.add_longhorn_volume("pvc-3")
    four = tree.add_longhorn_volume("pvc-4")
    tree.write(f"/sys/block/{one.dm}/dm/suspended", "banana\n")
    os.unlink(tree.p(f"/sys/block/{two.dm}/dm/name"))
    os.unlink(tree.p(f"/sys/dev/block/{three.backing_dev}"))  # so the namespace's dev is read
    tree.write(f"/sys/block/{three.backing}/dev", "not-a-number\n")
    os.symlink("../../devices/nowhere", tree.p("/sys/dev/block/garbage"))
    os.unlink(tree.p(f"/sys/class/nvme/{four.controller}/state"))
    without_dm_control(monkeypatch)
    inv = inventory(tree)
    assert dm_named(inv, "pvc-1").suspended is True  # unreadable reads as the cautious answer
    assert "pvc-2" not in {d.name for d in inv.dm_devices}
    problems = "\n".join(inv.problems)
    assert f"/sys/block/{one.dm}/dm/suspended: expected 0 or 1, got 'banana'" in problems
    assert f"/sys/block/{two.dm}/dm/name: missing or empty" in problems
    assert "/sys/dev/block/garbage: not a major:minor name" in problems
    assert "/dev: expected major:minor, got 'not-a-number'" in problems
    assert f"/sys/class/nvme/{four.controller}/state: missing" in problems
    assert all("\n" not in p for p in inv.problems)


def test_unreadable_sysfs_file_is_a_problem_not_a_crash(tree: HostTree, monkeypatch) -> None:
    vol = tree.add_longhorn_volume("pvc-1")
    os.mkdir(tree.p(f"/sys/block/{vol.dm}/dm/uuid.d"))
    os.unlink(tree.p(f"/sys/block/{vol.dm}/dm/uuid"))
    os.rename(tree.p(f"/sys/block/{vol.dm}/dm/uuid.d"), tree.p(f"/sys/block/{vol.dm}/dm/uuid"))
    without_dm_control(monkeypatch)
    inv = inventory(tree)  # reading a directory fails with EISDIR
    assert "pvc-1" not in {d.name for d in inv.dm_devices}
    assert any("dm/uuid: cannot read" in p for p in inv.problems)


def test_mountinfo_escapes_and_fields() -> None:
    text = (
        "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n"
        "37 35 253:4 / /var/lib/kubelet/a\\011tab\\134back rw shared:2 shared:3"
        " - xfs /dev/mapper/x\\040y rw\n"
        "garbage line\n"
        "38 35 x:y / /bad rw - ext4 /dev/z rw\n"
    )
    mounts = parse_mountinfo(text)
    assert [(m.dev, m.mount_point, m.source) for m in mounts] == [
        (DevNum(98, 0), "/mnt/with space", "/dev/root"),
        (DevNum(253, 4), "/var/lib/kubelet/a\ttab\\back", "/dev/mapper/x y"),
    ]


def test_an_empty_host_reads_as_empty_without_problems(tmp_path) -> None:
    inv = read_inventory(HostRoot(str(tmp_path)))
    assert (inv.dm_devices, inv.nodes, inv.subsystems, inv.block_devices) == ((), (), (), ())
    no_proc = "/proc: no processes listed (not the host's /proc?)"
    assert inv.mounts == Unknown(f"mounts unknown: {no_proc}")
    assert inv.openers == Unknown(f"open block devices unknown: {no_proc}")
    assert inv.frontend_records == Unknown("engine-frontend records unknown: /var/lib/longhorn does "
                                           "not exist: set longhorn.data_path to Longhorn's data path")
    assert len(inv.problems) == 3


RECORDS = "/var/lib/longhorn/metadata/enginefrontends"


def test_engine_frontend_records_name_the_volumes_with_a_record(tree: HostTree) -> None:
    assert inventory(tree).frontend_records == frozenset()  # Longhorn before v1.12: no directory
    tree.write(f"{RECORDS}/pvc-1/enginefrontend.json", "{}")
    tree.write(f"{RECORDS}/pvc-2/other.json", "{}")
    tree.write(f"{RECORDS}/Not_A_Volume/enginefrontend.json", "{}")
    inv = inventory(tree)
    assert inv.frontend_records == frozenset({"pvc-1"}) and inv.problems == ()
    tree.write("/data/longhorn/replicas/.keep", "")
    moved = read_inventory(HostRoot(tree.root), longhorn_data_path="/data/longhorn/")
    assert moved.frontend_records == frozenset()


def test_a_record_that_is_a_dangling_link_still_names_its_volume(tree: HostTree) -> None:
    """Something is there, even if it leads nowhere: the cautious reading keeps the volume's devices."""
    os.makedirs(tree.p(f"{RECORDS}/pvc-1"))
    os.symlink("/nowhere", tree.p(f"{RECORDS}/pvc-1/enginefrontend.json"))
    assert inventory(tree).frontend_records == frozenset({"pvc-1"})


def test_a_data_path_that_does_not_exist_leaves_the_records_unknown(tree: HostTree) -> None:
    """longhorn.data_path is not where Longhorn keeps its data (a custom data path): the records
    a v1.12+ instance-manager re-adopts devices by are not "none" but unknown."""
    tree.write(f"{RECORDS}/pvc-1/enginefrontend.json", "{}")
    inv = read_inventory(HostRoot(tree.root), longhorn_data_path="/mnt/longhorn")
    assert inv.frontend_records == Unknown("engine-frontend records unknown: /mnt/longhorn does not "
                                           "exist: set longhorn.data_path to Longhorn's data path")


@pytest.mark.parametrize("unreadable", [RECORDS, f"{RECORDS}/pvc-2"])
def test_unreadable_engine_frontend_records_are_unknown(tree: HostTree, unreadable: str) -> None:
    """Rule fail-closed: the directory, or one volume's record, unreadable (here a link loop)."""
    tree.write(f"{RECORDS}/pvc-1/enginefrontend.json", "{}")
    if unreadable == RECORDS:
        os.rename(tree.p(RECORDS), tree.p(RECORDS + ".old"))
    os.symlink(os.path.basename(unreadable), tree.p(unreadable))
    inv = inventory(tree)
    assert isinstance(inv.frontend_records, Unknown)
    assert inv.frontend_records.reason.startswith("engine-frontend records unknown: ")
    assert unreadable in inv.frontend_records.reason
    assert inv.frontend_records.reason in inv.problems
