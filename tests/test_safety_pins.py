"""Safety checks pinned one at a time: each test's fixture differs from an owned, idle, unchanged
Longhorn leftover in exactly one fact, so deleting the one check that looks at it fails the test.

Host trees (tests/hosttree.py) with the fake dmsetup; the act tests change the tree between
make_plan and Actor.execute, as a new instance-manager or udev would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional, Union

import pytest

import lhsweep.act
import lhsweep.sweep
from lhsweep.act import Actor
from lhsweep.config import Config
from lhsweep.host import HostRoot
from lhsweep.inventory import DmsetupDmControl, IoctlDmControl, read_inventory
from lhsweep.longhorn import volume_lock_path
from lhsweep.model import ActionOutcome, ActionResult, Entry, Kind, Plan, RuntimeView, Verdict
from lhsweep.plan import make_plan
from lhsweep.sweep import RuntimeConfirmation, scan
from lhsweep.tools import StuckProcess, ToolResult, ToolRunner
from tests.fakes.kerneltree import CTL, SUBSYS
from tests.hosttree import FAKES, LONGHORN_PREFIX, VOLUME_SECTORS, HostTree, crypt_params, fake_host
from tests.inventories import instance_manager, runtime_unknown, runtime_with
from tests.test_inventory_dmioctl import kernel_of

NOW = 1_800_000_000.0
# No grace period: the tree's nodes were made a moment ago, yet count as old leftovers.
CONFIG = Config(sweep_grace_period=0.0)
OTHER_VENDOR_NQN = "nqn.2014-08.org.nvmexpress:uuid:5f1c-other-vendor"
HALF = VOLUME_SECTORS // 2
CONTROL = "/.fake/dm-control"  # a plain file: the simulated kernel answers the ioctls


class LiveKernel:
    """The dm ioctl answered in-process from the tree's dm devices as they are at each call."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.failing = False

    def __call__(self, fd: int, request: int, buf: bytearray, mutate: bool) -> int:
        if self.failing:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        # Re-read from disk: the fake dmsetup (which removes devices) changes the tree behind us.
        return kernel_of(HostTree(self.root))(fd, request, buf, mutate)


class PinTree(HostTree):
    """A host tree with its simulated dm ioctl."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.kernel = LiveKernel(root)
        Path(self.p(CONTROL)).write_bytes(b"")

    def dm_control(self) -> IoctlDmControl:
        """lhsweep's in-process dm control over the tree's simulated kernel."""
        return IoctlDmControl(self.p(CONTROL), self.kernel)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PinTree]:
    yield PinTree(fake_host(str(tmp_path / "host"), monkeypatch).root)


class ClaimingHost(HostRoot):
    """The tree as a host whose kernel refuses an O_EXCL open of the block nodes in `claimed`."""

    def __init__(self, root: str, claimed: set[str]) -> None:
        super().__init__(root)
        self.claimed = claimed
        self.probed: list[str] = []  # every block node opened O_EXCL, in order

    def open(self, host_path: str, flags: int, mode: int = 0o644) -> int:
        if flags & os.O_EXCL:
            self.probed.append(host_path)
            if host_path in self.claimed:
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        return super().open(host_path, flags, mode)


def plan_of(tree: PinTree, runtime: Optional[RuntimeView] = None, host: Optional[HostRoot] = None) -> Plan:
    """The plan of the tree with a runtime that answered: by default, no instance-manager runs."""
    inventory = read_inventory(host or HostRoot(tree.root), tree.dm_control())
    assert inventory.problems == ()
    return make_plan(inventory, runtime or runtime_with(), CONFIG, NOW)


def im_started_after_the_tree() -> RuntimeView:
    """A running instance-manager started after every device of the tree was made."""
    return runtime_with(instance_manager(int(NOW * 1e9) - 10**9))


def verdict(plan: Plan, kind: Kind, name: str) -> Entry:
    """The entry of `kind` called `name`."""
    return next(e for e in plan.entries if e.kind is kind and e.name == name)


def execute(tree: PinTree, plan: Plan, on_outcome: Optional[Callable[[Entry, ActionOutcome], None]] = None,
            host: Optional[HostRoot] = None) -> dict[tuple[Kind, str], ActionOutcome]:
    """Carry out the plan on the tree (`on_outcome` runs after each action); outcomes by (kind, name)."""
    # Read through the simulated ioctl; remove through the fake dmsetup (the kernel's DM_DEV_REMOVE
    # runs in a helper process, which a simulated ioctl cannot answer).
    actor = Actor(host or HostRoot(tree.root), ToolRunner(60), tree.dm_control(), use_tools=True)
    if on_outcome is not None:
        actor.on_outcome = on_outcome
    return {(o.kind, o.name): o for o in actor.execute(plan, dry_run=False)}


def removed_dm(tree: PinTree) -> list[str]:
    """The dm devices the fake dmsetup was asked to remove."""
    path = Path(tree.p("/.fake/calls.log"))
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [line for line in lines if '"remove"' in line]


def longhorn_namespace(tree: PinTree, volume: str) -> str:
    """Connect a Longhorn subsystem for `volume`; its namespace head's 'M:m'."""
    return tree.connect(f"{LONGHORN_PREFIX}volume-{volume}")[3]


def test_the_control_fixture_is_stale_so_each_pin_below_differs_in_one_fact(tree: PinTree) -> None:
    """A uuid-less single linear device over a Longhorn namespace, with its node: owned and stale."""
    tree.add_longhorn_volume("pvc-ok")
    plan = plan_of(tree)
    assert verdict(plan, Kind.DM, "pvc-ok").verdict is Verdict.STALE
    assert verdict(plan, Kind.NODE, "pvc-ok").verdict is Verdict.STALE


# ---------------------------------------------------------------- rule prove-ownership (plan)


def test_two_linear_segments_over_a_longhorn_namespace_are_foreign(tree: PinTree) -> None:
    """One linear segment: a uuid-less device of two linear segments on a Longhorn head is not Longhorn's."""
    head = longhorn_namespace(tree, "pvc-two")
    tree.add_dm("pvc-two", [(0, HALF, "linear", f"{head} 0"), (HALF, HALF, "linear", f"{head} {HALF}")])
    tree.add_node("pvc-two", tree.dm("pvc-two")["dev"])
    plan = plan_of(tree)
    dm = verdict(plan, Kind.DM, "pvc-two")
    assert dm.verdict is Verdict.FOREIGN and "not one linear segment" in dm.reason
    assert verdict(plan, Kind.NODE, "pvc-two").verdict is Verdict.FOREIGN


def test_plain_dm_crypt_without_uuid_over_a_longhorn_namespace_is_foreign(tree: PinTree) -> None:
    """The target type: a uuid-less single crypt segment (plain dm-crypt) on a Longhorn head."""
    head = longhorn_namespace(tree, "pvc-plain")
    tree.add_dm("pvc-plain", [(0, VOLUME_SECTORS, "crypt", crypt_params(head))])
    plan = plan_of(tree)
    dm = verdict(plan, Kind.DM, "pvc-plain")
    assert dm.verdict is Verdict.FOREIGN and "not one linear segment" in dm.reason


def test_a_single_linear_device_with_an_lvm_uuid_over_a_longhorn_namespace_is_foreign(
        tree: PinTree) -> None:
    """The dm uuid: LVM put straight on a raw Longhorn namespace is the user's, not Longhorn's."""
    head = longhorn_namespace(tree, "pvc-lvm")
    tree.add_dm("pvc-lvm", [(0, VOLUME_SECTORS, "linear", f"{head} 0")],
                uuid=f"LVM-{'A1b2C3d4' * 4}{'E5f6G7h8' * 4}")
    tree.add_node("pvc-lvm", tree.dm("pvc-lvm")["dev"])
    plan = plan_of(tree)
    dm = verdict(plan, Kind.DM, "pvc-lvm")
    assert dm.verdict is Verdict.FOREIGN and "has a dm uuid" in dm.reason
    assert verdict(plan, Kind.NODE, "pvc-lvm").verdict is Verdict.FOREIGN


def test_a_linear_device_over_another_vendors_nvme_of_namespace_is_foreign(tree: PinTree) -> None:
    """The Longhorn NQN: Longhorn's shape over a namespace of another NVMe-oF subsystem is not owned."""
    head = tree.connect(OTHER_VENDOR_NQN)[3]
    tree.add_dm("pvc-vendor", [(0, VOLUME_SECTORS, "linear", f"{head} 0")])
    tree.add_node("pvc-vendor", tree.dm("pvc-vendor")["dev"])
    plan = plan_of(tree)
    dm = verdict(plan, Kind.DM, "pvc-vendor")
    assert dm.verdict is Verdict.FOREIGN and "non-Longhorn subsystem" in dm.reason
    assert verdict(plan, Kind.NVME, OTHER_VENDOR_NQN).verdict is Verdict.FOREIGN
    assert plan.removals == ()


def test_a_linear_device_over_a_present_loop_device_is_foreign_even_with_its_node(tree: PinTree) -> None:
    """A present backing that is neither NVMe-oF nor ublk: a matching node proves nothing then."""
    volume = tree.add_plain_linear_on_loop("pvc-loop")
    tree.add_node("pvc-loop", volume.dm_dev)
    dm = verdict(plan_of(tree), Kind.DM, "pvc-loop")
    assert dm.verdict is Verdict.FOREIGN and "not an NVMe-oF or ublk device" in dm.reason


def test_a_linear_device_over_ublk_with_a_name_longhorn_never_gives_is_foreign(tree: PinTree) -> None:
    """ublk carries no NQN: only a Longhorn-shaped name makes such a device Longhorn's."""
    ublk, ublk_dev = tree.add_ublk()
    tree.add_dm("Backup_Disk", [(0, VOLUME_SECTORS, "linear", f"{ublk_dev} 0")], slaves=(ublk,))
    dm = verdict(plan_of(tree), Kind.DM, "Backup_Disk")
    assert dm.verdict is Verdict.FOREIGN and "not Longhorn-shaped" in dm.reason


def test_a_linear_device_over_ublk_without_its_longhorn_node_is_foreign(tree: PinTree) -> None:
    """Any ublk server makes ublk disks: a Longhorn-shaped name over one is not enough; Longhorn's
    UBLK frontend also makes /dev/longhorn/<volume> with the dm device's number."""
    volume = tree.add_longhorn_volume("pvc-ublkx", ublk=True, with_node=False)
    dm = verdict(plan_of(tree), Kind.DM, "pvc-ublkx")
    assert dm.verdict is Verdict.FOREIGN and "no /dev/longhorn/pvc-ublkx points at it" in dm.reason
    tree.add_node("pvc-ublkx", volume.dm_dev)
    assert verdict(plan_of(tree), Kind.DM, "pvc-ublkx").verdict is Verdict.STALE


def gone_loop_device(tree: PinTree, name: str) -> str:
    """A uuid-less linear device whose loop backing vanished; returns its 'M:m'."""
    volume = tree.add_plain_linear_on_loop(name)
    tree.remove_block(volume.backing)
    return volume.dm_dev


def test_backing_gone_and_a_name_longhorn_never_gives_is_foreign_even_with_its_node(tree: PinTree) -> None:
    """With the backing gone, the name must be Longhorn-shaped before a node may vouch for it."""
    tree.add_node("Scratch_1", gone_loop_device(tree, "Scratch_1"))
    dm = verdict(plan_of(tree), Kind.DM, "Scratch_1")
    assert dm.verdict is Verdict.FOREIGN and "not Longhorn-shaped" in dm.reason


def test_backing_gone_and_a_same_named_node_pointing_elsewhere_is_foreign(tree: PinTree) -> None:
    """Node name matches device: a node of the same name that points at another number proves nothing."""
    gone_loop_device(tree, "pvc-num")
    tree.add_node("pvc-num", "253:77")
    dm = verdict(plan_of(tree), Kind.DM, "pvc-num")
    assert dm.verdict is Verdict.FOREIGN and "nothing proves" in dm.reason


def test_backing_gone_from_another_vendors_subsystem_is_foreign(tree: PinTree) -> None:
    """A dangling slave link proves ownership only into a subsystem with Longhorn's NQN."""
    _, _, head, head_dev = tree.connect(OTHER_VENDOR_NQN)
    tree.add_dm("pvc-vendor-gone", [(0, VOLUME_SECTORS, "linear", f"{head_dev} 0")], slaves=(head,))
    tree.kill_target(OTHER_VENDOR_NQN)
    dm = verdict(plan_of(tree), Kind.DM, "pvc-vendor-gone")
    assert dm.verdict is Verdict.FOREIGN and "nothing proves" in dm.reason


def test_a_longhorn_device_held_by_a_users_device_is_busy(tree: PinTree) -> None:
    """Never touch a busy device: held (holders/) by a device that is not its -encrypted child."""
    volume = tree.add_longhorn_volume("pvc-held")
    tree.add_dm("vg1-lv", [(0, 8, "linear", f"{volume.dm_dev} 2048")], slaves=(volume.dm,),
                uuid=f"LVM-{'Z9y8X7w6' * 8}")
    dm = verdict(plan_of(tree), Kind.DM, "pvc-held")
    assert dm.verdict is Verdict.BUSY and "held by" in dm.reason and "open" not in dm.reason


def test_a_longhorn_device_with_a_deferred_removal_pending_is_busy(tree: PinTree) -> None:
    """Never touch a busy device: a deferred removal queued by someone else (idle otherwise)."""
    tree.add_longhorn_volume("pvc-deferred", deferred_remove=True)
    dm = verdict(plan_of(tree), Kind.DM, "pvc-deferred")
    assert dm.verdict is Verdict.BUSY and "deferred removal pending" in dm.reason


def test_a_node_with_a_name_longhorn_never_gives_is_foreign(tree: PinTree) -> None:
    """A dangling block node is stale only when its name is Longhorn-shaped."""
    tree.add_node("Not_Longhorn", "253:88")
    tree.add_node("pvc-dangling", "253:89")
    plan = plan_of(tree)
    assert verdict(plan, Kind.NODE, "pvc-dangling").verdict is Verdict.STALE
    node = verdict(plan, Kind.NODE, "Not_Longhorn")
    assert node.verdict is Verdict.FOREIGN and "not Longhorn-shaped" in node.reason


def test_a_node_on_another_vendors_namespace_is_foreign(tree: PinTree) -> None:
    """Backup nodes point straight at a namespace: only at one of a Longhorn subsystem."""
    head_dev = tree.connect(OTHER_VENDOR_NQN)[3]
    tree.add_node("pvc-backup", head_dev)
    node = verdict(plan_of(tree), Kind.NODE, "pvc-backup")
    assert node.verdict is Verdict.FOREIGN and "not a Longhorn V2 device" in node.reason


# ---------------------------------------------------------------- rule respect-live-instance-manager (plan)


def test_a_running_instance_manager_keeps_an_older_device_whose_backing_is_present(tree: PinTree) -> None:
    """Older than the instance-manager, yet its namespace is there: the new one may have adopted it."""
    tree.add_longhorn_volume("pvc-adopted")
    dm = verdict(plan_of(tree, im_started_after_the_tree()), Kind.DM, "pvc-adopted")
    assert dm.verdict is Verdict.LIVE and "may own it" in dm.reason


def test_a_running_instance_manager_keeps_a_device_of_unknown_age(tree: PinTree) -> None:
    """Backing gone, no node to date it (owned through its dangling slave): its age is unknown."""
    tree.add_longhorn_volume("pvc-ageless", with_node=False, backing_gone=True)
    assert verdict(plan_of(tree), Kind.DM, "pvc-ageless").verdict is Verdict.STALE
    dm = verdict(plan_of(tree, im_started_after_the_tree()), Kind.DM, "pvc-ageless")
    assert dm.verdict is Verdict.LIVE and "age is unknown" in dm.reason


# ---------------------------------------------------------------- rule fail-closed (inventory)


class TableClearedAfterInfo(ToolRunner):
    """Runs the fake dmsetup; right after `dmsetup info`, a device's table is cleared (a reload)."""

    def __init__(self, tree: PinTree, name: str) -> None:
        super().__init__(60)
        self.tree, self.name = tree, name

    def run(self, argv: Union[list[str], tuple[str, ...]], timeout: Optional[float] = None) -> ToolResult:
        """The tool's answer; the tree changes after the info call."""
        result = super().run(argv, timeout)
        if list(argv[1:]) == ["info"]:
            self.tree.set_dm(self.name, targets=[])
        return result


def test_a_table_changing_between_dmsetups_info_and_table_is_unknown(tree: PinTree) -> None:
    """`dmsetup info` counts targets that `dmsetup table` then lacks: the table is unknown, not empty."""
    tree.add_longhorn_volume("pvc-torn")
    control = DmsetupDmControl(TableClearedAfterInfo(tree, "pvc-torn"), os.path.join(FAKES, "dmsetup"))
    inventory = read_inventory(HostRoot(tree.root), control)
    plan = make_plan(inventory, runtime_with(), CONFIG, NOW)
    dm = verdict(plan, Kind.DM, "pvc-torn")
    assert dm.verdict is Verdict.UNKNOWN and "could not be read" in dm.reason


class ForgedInfoBlock(ToolRunner):
    """Runs the fake dmsetup; its listing gains a block that claims `dev` under another name, idle.

    What a dm device whose name holds newlines prints: lines that pass for another device's.
    """

    def __init__(self, dev: str, backing: str) -> None:
        super().__init__(60)
        self.dev, self.backing = dev, backing

    def run(self, argv: Union[list[str], tuple[str, ...]], timeout: Optional[float] = None) -> ToolResult:
        """The tool's answer with the forged device's info block or table line added."""
        result = super().run(argv, timeout)
        major, minor = self.dev.split(":")
        if list(argv[1:]) == ["info"]:
            forged = (f"\nName:              ghost\nState:             ACTIVE\nOpen count:        0\n"
                      f"Major, minor:      {major}, {minor}\nNumber of targets: 1\n")
            return result._replace(stdout=result.stdout + forged)
        if list(argv[1:]) == ["table"]:
            return result._replace(stdout=result.stdout + f"ghost: 0 2048 linear {self.backing} 0\n")
        return result


def test_a_device_number_listed_under_two_names_is_unknown_for_both(tree: PinTree) -> None:
    """An idle 'ghost' claiming a busy volume's number neither hides it nor makes its node stale."""
    volume = tree.add_longhorn_volume("pvc-open", open_count=1)
    control = DmsetupDmControl(ForgedInfoBlock(volume.dm_dev, volume.backing_dev),
                               os.path.join(FAKES, "dmsetup"))
    inventory = read_inventory(HostRoot(tree.root), control)
    assert any("under 2 names ('pvc-open', 'ghost')" in p for p in inventory.problems), inventory.problems
    plan = make_plan(inventory, runtime_with(), CONFIG, NOW)
    assert verdict(plan, Kind.DM, "pvc-open").verdict is Verdict.UNKNOWN
    assert verdict(plan, Kind.NODE, "pvc-open").verdict is not Verdict.STALE
    assert all(e.name != "ghost" for e in plan.entries)


def unreadable_block_entry(tree: PinTree, dev: str) -> None:
    """/sys/dev/block/M:m is there but not a link: the device it names cannot be told."""
    tree.unlink(f"/sys/dev/block/{dev}")
    tree.write(f"/sys/dev/block/{dev}", "garbage\n")


def plan_with_problems(tree: PinTree, runtime: Optional[RuntimeView] = None) -> Plan:
    """The plan of a tree that the inventory could not read whole (what it lists is checked)."""
    inventory = read_inventory(HostRoot(tree.root), tree.dm_control())
    assert inventory.problems
    return make_plan(inventory, runtime or runtime_with(), CONFIG, NOW)


def test_a_backing_namespace_missing_from_sys_dev_block_is_present_for_a_running_manager(
        tree: PinTree) -> None:
    """Its /sys/dev/block entry unreadable, the namespace is still there: the running manager keeps it."""
    volume = tree.add_longhorn_volume("pvc-hidden")
    unreadable_block_entry(tree, volume.backing_dev)
    dm = verdict(plan_with_problems(tree, im_started_after_the_tree()), Kind.DM, "pvc-hidden")
    assert dm.verdict is Verdict.LIVE and "may own it" in dm.reason


def test_a_backing_missing_from_an_unreadable_sys_dev_block_is_not_gone(tree: PinTree) -> None:
    """A ublk backing whose entry cannot be read may exist: its node proves nothing gone, unknown."""
    volume = tree.add_longhorn_volume("pvc-ublk", ublk=True)
    unreadable_block_entry(tree, volume.backing_dev)
    plan = plan_with_problems(tree)
    dm = verdict(plan, Kind.DM, "pvc-ublk")
    assert dm.verdict is Verdict.UNKNOWN and "not among the block devices read" in dm.reason
    assert plan.removals == ()


def test_a_node_whose_device_is_missing_from_an_unreadable_sys_dev_block_is_unknown(tree: PinTree) -> None:
    """The node's dm device cannot be listed: "no longer exists" would be a guess."""
    volume = tree.add_longhorn_volume("pvc-unlisted")
    unreadable_block_entry(tree, volume.dm_dev)
    plan = plan_with_problems(tree)
    node = verdict(plan, Kind.NODE, "pvc-unlisted")
    assert node.verdict is Verdict.UNKNOWN and "not among the block devices read" in node.reason
    assert (Kind.NODE, "pvc-unlisted") not in {(e.kind, e.name) for e in plan.removals}


def test_a_namespace_of_an_unreadable_subsystem_is_not_called_a_plain_disk(tree: PinTree) -> None:
    """Its NVMe subsystem cannot be read: whether the device is over Longhorn's namespace is unknown."""
    volume = tree.add_longhorn_volume("pvc-subsys")
    tree.unlink(f"/sys/class/nvme-subsystem/{volume.subsystem}/subsysnqn")
    plan = plan_with_problems(tree)
    dm = verdict(plan, Kind.DM, "pvc-subsys")
    assert dm.verdict is Verdict.UNKNOWN and "could not be read" in dm.reason
    assert plan.removals == ()


def test_a_subsystem_with_an_unreadable_namespace_is_not_disconnected(tree: PinTree) -> None:
    """A namespace without a readable number may have users: its subsystem is left out, not emptied."""
    _, _, head, head_dev = tree.connect(f"{LONGHORN_PREFIX}volume-pvc-lvm")
    tree.add_dm("vg0-data", [(0, VOLUME_SECTORS, "linear", f"{head_dev} 0")], slaves=(head,),
                uuid=f"LVM-{'A1b2C3d4' * 8}")
    tree.unlink(f"/sys/dev/block/{head_dev}")  # so the namespace's own dev is read
    tree.write(f"{tree.device_dir(head)}/dev", "not-a-number\n")
    plan = plan_with_problems(tree)
    assert not [e for e in plan.entries if e.kind is Kind.NVME]
    assert plan.removals == ()


def test_a_subsystem_with_a_controller_of_unreadable_state_is_left_out(tree: PinTree) -> None:
    """A controller there without a readable state: its subsystem is not known whole, so neither
    it nor a dm device over its namespace is planned on what could be read."""
    volume = tree.add_longhorn_volume("pvc-ctrl")
    tree.unlink(f"/sys/class/nvme/{volume.controller}/state")
    plan = plan_with_problems(tree)
    assert not [e for e in plan.entries if e.kind is Kind.NVME]
    assert verdict(plan, Kind.DM, "pvc-ctrl").verdict is Verdict.UNKNOWN
    assert plan.removals == ()


# ---------------------------------------------------------------- an NVMe namespace's users


def bare_namespace(tree: PinTree, volume: str, suffix: str = "volume-{}") -> tuple[str, str, str]:
    """A Longhorn subsystem connected with no dm device on it: (NQN, namespace, its 'M:m')."""
    nqn = LONGHORN_PREFIX + suffix.format(volume)
    _, _, head, head_dev = tree.connect(nqn)
    return nqn, head, head_dev


@pytest.mark.parametrize("name, params", [("pvc-bar", "{} 2048"), ("admin-p1", "{} 0")])
def test_a_linear_over_a_longhorn_namespace_unlike_longhorns_own_is_foreign(
        tree: PinTree, name: str, params: str) -> None:
    """Longhorn maps the whole namespace from its sector 0, named after the NQN's volume: an
    admin's mapping of part of it, or one by another name, is not Longhorn's to remove."""
    _, head, head_dev = bare_namespace(tree, "pvc-bar")
    tree.add_dm(name, [(0, HALF, "linear", params.format(head_dev))], slaves=(head,))
    dm = verdict(plan_of(tree), Kind.DM, name)
    assert dm.verdict is Verdict.FOREIGN, dm.reason


def test_a_leftover_proven_by_its_dangling_link_alone_must_carry_its_volumes_name(tree: PinTree) -> None:
    """The kernel's link to a gone namespace names a Longhorn subsystem of another volume."""
    tree.add_longhorn_volume("pvc-other", nqn=f"{LONGHORN_PREFIX}volume-pvc-y", with_node=False,
                             backing_gone=True)
    dm = verdict(plan_of(tree), Kind.DM, "pvc-other")
    assert dm.verdict is Verdict.FOREIGN and "whose volume is pvc-y, not pvc-other" in dm.reason


def test_an_idle_bare_namespace_is_stale_the_control_for_the_pins_below(tree: PinTree) -> None:
    nqn, _, _ = bare_namespace(tree, "pvc-bare")
    assert verdict(plan_of(tree), Kind.NVME, nqn).verdict is Verdict.STALE


def test_a_namespace_claimed_by_what_no_table_shows_keeps_its_controller(tree: PinTree) -> None:
    """btrfs (an anonymous number in mountinfo), swap, a mount seen through no process lhsweep
    reads, a storage target: each opens the namespace O_EXCL; the kernel's refusal tells."""
    nqn, head, _ = bare_namespace(tree, "pvc-claim")
    nvme = verdict(plan_of(tree, host=ClaimingHost(tree.root, {f"/dev/{head}"})), Kind.NVME, nqn)
    assert nvme.verdict is Verdict.BUSY and f"{head} is claimed exclusively" in nvme.reason


@pytest.mark.parametrize("how", ["mounted", "held", "claimed"])
def test_a_used_partition_keeps_its_namespaces_controller(tree: PinTree, how: str) -> None:
    """The kernel scans a namespace's partition table: each partition is a device with its own
    users (claiming the whole disk does not conflict with a claimed partition)."""
    nqn, head, _ = bare_namespace(tree, "pvc-part")
    part, part_dev = tree.add_partition(head, 2)
    claimed: set[str] = set()
    if how == "mounted":
        tree.add_mount(part_dev, "/mnt/restore", f"/dev/{part}")
    elif how == "held":
        tree.add_dm("vg1-data", [(0, 8, "linear", f"{part_dev} 0")], slaves=(part,),
                    uuid=f"LVM-{'B2c3D4e5' * 8}")
    else:
        claimed.add(f"/dev/{part}")
    nvme = verdict(plan_of(tree, host=ClaimingHost(tree.root, claimed)), Kind.NVME, nqn)
    assert nvme.verdict is Verdict.BUSY and part in nvme.reason


def test_a_partition_missing_from_a_partial_block_listing_is_still_found(tree: PinTree) -> None:
    """/sys/dev/block not read whole: the namespace's own directory says which partitions it has."""
    nqn, head, _ = bare_namespace(tree, "pvc-hidden-part")
    part, part_dev = tree.add_partition(head, 1)
    tree.add_mount(part_dev, "/mnt/restore", f"/dev/{part}")
    unreadable_block_entry(tree, part_dev)
    nvme = verdict(plan_with_problems(tree), Kind.NVME, nqn)
    assert nvme.verdict is Verdict.BUSY and f"{part} is mounted on /mnt/restore" in nvme.reason


@pytest.mark.parametrize("runtime", ["instance-manager alive", "unknown"])
def test_no_namespace_is_probed_while_an_instance_manager_may_build_on_it(tree: PinTree,
                                                                          runtime: str) -> None:
    """An O_EXCL probe claims the device for an instant: an instance-manager's `dmsetup create`
    on that namespace then would fail. With one alive (or none known) nothing is probed, and a
    foreign subsystem's disks (a local PCIe NVMe disk being formatted) never are."""
    _, head, _ = bare_namespace(tree, "pvc-building")
    tree.connect(OTHER_VENDOR_NQN)
    host = ClaimingHost(tree.root, set())
    view = im_started_after_the_tree() if runtime != "unknown" else runtime_unknown("down")
    report = scan(CONFIG, host, query=lambda _c, _h: view, dm_control=tree.dm_control())
    assert host.probed == []
    assert {e.verdict for e in report.plan.entries} <= {Verdict.LIVE, Verdict.UNKNOWN, Verdict.FOREIGN}
    scan(CONFIG, host, query=lambda _c, _h: runtime_with(), dm_control=tree.dm_control())
    assert host.probed == [f"/dev/{head}"]  # with no instance-manager: its namespace, and only it


@pytest.mark.parametrize("lock", ["/run/longhorn/spdk-pvc-probed.lock", "/run/longhorn-spdk.lock"])
def test_a_namespace_is_probed_only_under_its_volumes_longhorn_locks(tree: PinTree, lock: str) -> None:
    """An instance-manager started since the runtime answered may be building on the namespace
    under go-spdk-helper's lock: the probe, which claims it for an instant, waits for no lock and
    makes none; the subsystem is unknown. Free locks are taken for the probe and let go after."""
    nqn, head, _ = bare_namespace(tree, "pvc-probed")
    host = ClaimingHost(tree.root, set())
    with held_lock(tree, lock):
        nvme = verdict(plan_of(tree, host=host), Kind.NVME, nqn)
    assert host.probed == []
    assert nvme.verdict is Verdict.UNKNOWN and f"Longhorn lock {lock} is held" in nvme.reason
    assert verdict(plan_of(tree, host=host), Kind.NVME, nqn).verdict is Verdict.STALE
    assert host.probed == [f"/dev/{head}"]
    with held_lock(tree, lock):  # not still held by the scan
        pass


class LockWatchingHost(ClaimingHost):
    """Records, at each O_EXCL probe, which of `locks` (host paths) another process could take."""

    def __init__(self, tree: PinTree, locks: tuple[str, ...]) -> None:
        super().__init__(tree.root, set())
        self.tree, self.locks = tree, locks
        self.free_at_probe: list[str] = []

    def open(self, host_path: str, flags: int, mode: int = 0o644) -> int:
        if flags & os.O_EXCL:
            for lock in self.locks:
                with contextlib.suppress(BlockingIOError), held_lock(self.tree, lock):
                    self.free_at_probe.append(lock)
        return super().open(host_path, flags, mode)


def test_a_namespace_is_probed_while_its_volumes_locks_are_held(tree: PinTree) -> None:
    """Taken and let go before the probe, the locks would keep out nothing."""
    _, head, _ = bare_namespace(tree, "pvc-held-at-probe")
    locks = (volume_lock_path("pvc-held-at-probe"), "/run/longhorn-spdk.lock")
    host = LockWatchingHost(tree, locks)
    plan_of(tree, host=host)
    assert host.probed == [f"/dev/{head}"] and host.free_at_probe == []


def test_a_dry_runs_recheck_probes_under_the_locks_and_a_held_one_skips_it(tree: PinTree) -> None:
    """The dry run's re-check claims a namespace for an instant like a removal's: never while
    go-spdk-helper holds the volume's lock (an instance-manager building on it), always under it."""
    nqn, head, _ = bare_namespace(tree, "pvc-dry")
    plan = plan_of(tree)
    entry = verdict(plan, Kind.NVME, nqn)
    assert entry.verdict is Verdict.STALE and not entry.after
    lock = volume_lock_path("pvc-dry")
    host = LockWatchingHost(tree, (lock, "/run/longhorn-spdk.lock"))
    with held_lock(tree, lock):
        (held,) = Actor(host, ToolRunner(60), tree.dm_control()).execute(plan, dry_run=True)
    assert held.result is ActionResult.SKIPPED and "spdk-pvc-dry.lock" in held.detail
    assert host.probed == []
    (free,) = Actor(host, ToolRunner(60), tree.dm_control()).execute(plan, dry_run=True)
    assert free.result is ActionResult.SKIPPED and free.detail == "dry run: would remove"
    assert host.probed == [f"/dev/{head}"] and host.free_at_probe == []


def test_a_subsystem_of_the_nqn_not_read_whole_at_the_recheck_keeps_it(tree: PinTree) -> None:
    """Made again since the plan as another subsystem that cannot be read whole: not disconnected."""
    volume = tree.add_longhorn_volume("pvc-twice")
    plan = plan_of(tree)
    assert verdict(plan, Kind.NVME, volume.nqn).verdict is Verdict.STALE
    tree.write(f"{SUBSYS}/nvme-subsys9/subsysnqn", volume.nqn + "\n")
    os.makedirs(tree.p(f"{SUBSYS}/nvme-subsys9/nvme9n1"))  # a namespace without its dev
    tree.link("/sys/class/nvme-subsystem/nvme-subsys9", f"{SUBSYS}/nvme-subsys9")
    outcome = execute(tree, plan)[(Kind.NVME, volume.nqn)]
    assert outcome.result is ActionResult.SKIPPED and "cannot re-read the NVMe subsystems" in outcome.detail
    assert os.path.exists(tree.p(f"/sys/class/nvme/{volume.controller}"))


class StuckRunner(ToolRunner):
    """A runner that abandoned a call naming `argv` earlier (a removal stuck in the kernel)."""

    def __init__(self, argv: tuple[str, ...]) -> None:
        super().__init__(60)
        self.stuck_argv = argv

    def stuck(self) -> tuple[StuckProcess, ...]:
        return (StuckProcess(self.stuck_argv, 4242, 0.0),)


def test_an_entry_whose_earlier_removal_is_stuck_is_not_tried_again(tree: PinTree) -> None:
    """A second call on a device a call is stuck on would hang too (and pile up in D state)."""
    plan = stale_volume_plan(tree, "pvc-stuck")
    runner = StuckRunner(("dmsetup", "remove", "pvc-stuck"))
    outcomes = {(o.kind, o.name): o for o in
                Actor(HostRoot(tree.root), runner, tree.dm_control(), use_tools=True).execute(plan, False)}
    dm = outcomes[(Kind.DM, "pvc-stuck")]
    assert dm.result is ActionResult.SKIPPED and "(pid 4242) for it is still stuck" in dm.detail
    assert removed_dm(tree) == [] and os.path.exists(tree.p("/dev/longhorn/pvc-stuck"))


def test_a_node_replaced_after_its_recheck_is_not_unlinked(tree: PinTree,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The unlink checks the node at the directory fd once more: one made again between the
    re-check and the unlink (the runtime's answer, asked for in between, can take a while) stays."""
    tree.add_dangling_node("pvc-again", "253:90")
    plan = plan_of(tree)
    assert verdict(plan, Kind.NODE, "pvc-again").verdict is Verdict.STALE
    recheck = Actor._recheck_node

    def recheck_then_replace(actor: Actor, entry: Entry) -> None:
        recheck(actor, entry)
        os.unlink(tree.p("/dev/longhorn/pvc-again"))
        tree.add_dangling_node("pvc-again", "253:91")  # Longhorn's mknod for a new device

    monkeypatch.setattr(Actor, "_recheck_node", recheck_then_replace)
    outcome = execute(tree, plan)[(Kind.NODE, "pvc-again")]
    assert outcome.result is ActionResult.SKIPPED and "replaced since it was planned" in outcome.detail
    assert os.stat(tree.p("/dev/longhorn/pvc-again")).st_rdev == os.makedev(253, 91)


def test_a_subsystem_whose_namespaces_have_holders_takes_no_longhorn_lock(tree: PinTree) -> None:
    """Nothing is probed, so go-spdk-helper's locks are not taken at all (no file made for them)."""
    tree.add_longhorn_volume("pvc-quiet")
    host = ClaimingHost(tree.root, set())
    assert verdict(plan_of(tree, host=host), Kind.DM, "pvc-quiet").verdict is Verdict.STALE
    assert host.probed == [] and not os.path.exists(tree.p(volume_lock_path("pvc-quiet")))
    assert not os.path.exists(tree.p("/run/longhorn-spdk.lock"))


def test_the_recheck_probes_only_the_subsystem_it_disconnects(tree: PinTree) -> None:
    """Right before a disconnect only that volume's lock is held: another Longhorn namespace
    (whose instance-manager may have started since the plan) is not claimed for an instant."""
    volume = tree.add_longhorn_volume("pvc-going")
    other_nqn, other, _ = bare_namespace(tree, "pvc-other-ns")
    host = ClaimingHost(tree.root, set())
    config = dataclasses.replace(CONFIG, sweep_exclude=("*:volume-pvc-other-ns",))
    plan = make_plan(read_inventory(host, tree.dm_control()), runtime_with(), config, NOW)
    assert verdict(plan, Kind.NVME, other_nqn).verdict is Verdict.FOREIGN
    host.probed.clear()
    assert execute(tree, plan, host=host)[(Kind.NVME, volume.nqn)].result.value == "removed"
    assert host.probed == [f"/dev/{volume.backing}"] and f"/dev/{other}" not in host.probed


class NameReusedBeforeTheWrite(ToolRunner):
    """Between the re-check and the helper's write the stale controller reaches ctrl_loss_tmo and
    goes; another vendor's new connection gets the lowest free name, the stale one's."""

    def __init__(self, tree: PinTree, stale_nqn: str) -> None:
        super().__init__(60)
        self.tree, self.stale_nqn, self.newcomer = tree, stale_nqn, ""

    def call_helper(self, label: tuple[str, ...], request: dict[str, Any],
                    timeout: Optional[float] = None) -> ToolResult:
        if not self.newcomer:
            self.tree.disconnect(self.stale_nqn)
            self.newcomer = self.tree.connect(OTHER_VENDOR_NQN)[1]
            self.tree.write(f"{CTL}/{self.newcomer}/delete_controller", "")
        return super().call_helper(label, request, timeout)


def test_a_node_whose_number_cannot_be_looked_up_is_not_taken_for_free(tree: PinTree) -> None:
    """Fail closed at the node's re-check: /sys/dev/block unreadable after its dm device went
    (a refusal, not "no such device") is no proof that nothing has the number."""
    plan = stale_volume_plan(tree, "pvc-lookup")

    def break_the_lookup(entry: Entry, outcome: ActionOutcome) -> None:
        if entry.kind is Kind.DM:
            os.rename(tree.p("/sys/dev/block"), tree.p("/sys/dev/block.gone"))
            os.symlink("block", tree.p("/sys/dev/block"))  # a loop: ELOOP, not ENOENT

    outcomes = execute(tree, plan, break_the_lookup)
    assert outcomes[(Kind.DM, "pvc-lookup")].result.value == "removed"
    node = outcomes[(Kind.NODE, "pvc-lookup")]
    assert node.result.value == "skipped" and "cannot read the link" in node.detail
    assert os.path.exists(tree.p("/dev/longhorn/pvc-lookup"))


# Engine-frontend NQN suffixes: 1.12+, then engines named by a random id, then by an ordinal.
ENGINE_SUFFIXES = ["volume-{}", "{}-e-0123abcd", "{}-e-0", "{}-e-17"]


@pytest.mark.parametrize("suffix", ENGINE_SUFFIXES)
def test_a_volume_excluded_by_name_keeps_its_controller(tree: PinTree, suffix: str) -> None:
    """sweep.exclude names volumes as operators know them: the volume's NQN is kept too, also when
    its node stands straight on the namespace (no dm device whose holder would keep it)."""
    nqn, _, head_dev = bare_namespace(tree, "pvc-keep", suffix)
    tree.add_node("pvc-keep", head_dev)
    config = dataclasses.replace(CONFIG, sweep_exclude=("pvc-keep",))
    plan = make_plan(read_inventory(HostRoot(tree.root), tree.dm_control()), runtime_with(), config, NOW)
    nvme = verdict(plan, Kind.NVME, nqn)
    assert nvme.verdict is Verdict.FOREIGN and nvme.reason == "excluded by sweep.exclude pattern 'pvc-keep'"
    assert verdict(plan, Kind.NODE, "pvc-keep").verdict is Verdict.FOREIGN


def test_a_controller_name_given_to_another_connection_since_the_recheck_is_not_deleted(
        tree: PinTree) -> None:
    """Rule recheck-before-action, down to the write: delete_controller is written only through
    the directory of a controller that is still the planned NQN's, never by a name alone."""
    nqn = f"{LONGHORN_PREFIX}volume-pvc-renamed"
    controller = tree.connect(nqn)[1]
    tree.write(f"{CTL}/{controller}/delete_controller", "")  # the in-process path: sysfs has it
    plan = plan_of(tree)
    runner = NameReusedBeforeTheWrite(tree, nqn)
    actor = Actor(HostRoot(tree.root), runner, tree.dm_control())
    outcome = actor.execute(plan, dry_run=False)[-1]
    assert runner.newcomer and outcome.kind is Kind.NVME and outcome.result.value == "failed"
    assert f"subsysnqn is '{OTHER_VENDOR_NQN}', not '{nqn}'" in outcome.detail
    assert Path(tree.p(f"{CTL}/{runner.newcomer}/delete_controller")).read_text() == ""


def test_a_namespace_that_cannot_be_asked_whether_it_is_claimed_is_unknown(tree: PinTree) -> None:
    """Fail closed: no /dev node to open (or any other refusal than EBUSY) is not "unclaimed"."""
    nqn, head, _ = bare_namespace(tree, "pvc-nonode")
    tree.unlink(f"/dev/{head}")
    inventory = read_inventory(HostRoot(tree.root), tree.dm_control())
    nvme = verdict(make_plan(inventory, runtime_with(), CONFIG, NOW), Kind.NVME, nqn)
    assert nvme.verdict is Verdict.UNKNOWN and f"/dev/{head}: cannot open it" in nvme.reason


def test_a_namespace_node_of_another_number_cannot_say_it_is_unclaimed(tree: PinTree) -> None:
    """A stale /dev (a block node left with another device's number) answers for that device."""
    nqn, head, head_dev = bare_namespace(tree, "pvc-stale-dev")
    tree.unlink(f"/dev/{head}")
    major, minor = (int(x) for x in head_dev.split(":"))
    os.mknod(tree.p(f"/dev/{head}"), 0o600 | 0o060000, os.makedev(major, minor + 1000))
    host = OpenedAs(tree.root)
    nvme = verdict(plan_of(tree, host=host), Kind.NVME, nqn)
    assert nvme.verdict is Verdict.UNKNOWN and f"not of {head_dev}" in nvme.reason


class OpenedAs(HostRoot):
    """A host whose O_EXCL opens of block nodes succeed as for an unclaimed device (this machine's
    kernel has no device behind the tree's numbers): the node itself, opened as a path."""

    def open(self, host_path: str, flags: int, mode: int = 0o644) -> int:
        if flags & os.O_EXCL:
            flags = (flags & ~(os.O_EXCL | os.O_NONBLOCK | os.O_RDONLY)) | os.O_PATH
        return super().open(host_path, flags, mode)


def test_partitions_under_a_stale_holder_are_not_called_claimed(tree: PinTree) -> None:
    """A dm device holding the whole disk makes every partition's O_EXCL open fail: that is the
    holder's claim, weighed as such; the controller goes after it, once the re-check finds the
    partitions free."""
    volume = tree.add_longhorn_volume("pvc-parted")
    part, _ = tree.add_partition(volume.backing, 1)
    host = ClaimingHost(tree.root, {f"/dev/{part}"})  # as the kernel answers while dm holds the disk
    plan = plan_of(tree, host=host)
    assert verdict(plan, Kind.NVME, volume.nqn).verdict is Verdict.STALE
    host.claimed.clear()  # the dm device went
    assert execute(tree, plan, host=host)[(Kind.NVME, volume.nqn)].result.value == "removed"


def test_a_namespace_claimed_after_its_dm_device_went_keeps_its_controller(tree: PinTree) -> None:
    """The re-check before the disconnect asks the kernel again: claimed since (mounted directly
    by a backup, in a namespace lhsweep does not see)."""
    volume = tree.add_longhorn_volume("pvc-late-claim")
    plan = plan_of(tree)
    outcomes = execute(tree, plan, host=ClaimingHost(tree.root, {f"/dev/{volume.backing}"}))
    assert outcomes[(Kind.DM, "pvc-late-claim")].result.value == "removed"
    nvme = outcomes[(Kind.NVME, volume.nqn)]
    assert nvme.result.value == "skipped" and "claimed exclusively" in nvme.detail
    assert tree.subsystem_of(volume.nqn) is not None and os.listdir(tree.p("/sys/class/nvme"))


# ---------------------------------------------------------------- rule recheck-before-action (act)


def test_a_table_reloaded_between_plan_and_act_keeps_the_device(tree: PinTree) -> None:
    """The table fingerprint: a new instance-manager reloaded the leftover onto its own namespace.

    Same name, same device number, still idle: only the table tells it changed.
    """
    tree.add_longhorn_volume("pvc-reload", with_node=False)
    plan = plan_of(tree)
    assert verdict(plan, Kind.DM, "pvc-reload").verdict is Verdict.STALE
    new_head = tree.connect(f"{LONGHORN_PREFIX}volume-pvc-reload-2")[3]
    tree.set_dm("pvc-reload", targets=[[0, VOLUME_SECTORS, "linear", f"{new_head} 0"]])
    outcome = execute(tree, plan)[(Kind.DM, "pvc-reload")]
    assert outcome.result.value == "skipped" and "table changed" in outcome.detail
    assert removed_dm(tree) == []
    assert "pvc-reload" in tree.state["devices"]


def stale_node_plan(tree: PinTree, name: str) -> Plan:
    """A dangling /dev/longhorn node (its dm device gone): a stale node entry on its own."""
    _, dev = tree.add_dm(f"{name}-tmp", [(0, VOLUME_SECTORS, "linear", "7:99 0")])
    tree.add_node(name, dev)
    tree.remove_dm(f"{name}-tmp")
    plan = plan_of(tree)
    node = verdict(plan, Kind.NODE, name)
    assert node.verdict is Verdict.STALE and node.after == ()
    return plan


def test_a_node_recreated_between_plan_and_act_with_the_same_number_stays(tree: PinTree) -> None:
    """The inode: the node was re-made (same b M:m, new inode) after planning; it is not unlinked."""
    plan = stale_node_plan(tree, "pvc-node")
    node_path = tree.p("/dev/longhorn/pvc-node")
    rdev = os.stat(node_path).st_rdev
    # Made beside the old one, then renamed over it: the new inode cannot reuse the old number.
    os.mknod(node_path + ".new", 0o660 | 0o060000, rdev)
    os.rename(node_path + ".new", node_path)
    new_inode = os.stat(node_path).st_ino
    assert new_inode != verdict(plan, Kind.NODE, "pvc-node").identity.inode
    outcome = execute(tree, plan)[(Kind.NODE, "pvc-node")]
    assert outcome.result.value == "skipped" and "replaced since" in outcome.detail
    assert os.stat(node_path).st_ino == new_inode


def test_a_node_whose_inode_number_was_reused_for_another_device_stays(tree: PinTree) -> None:
    """The device number: the planned inode number now belongs to a node of another device.

    A file system may hand a freed inode number to the next mknod; the plan is given the number
    the node now has, and a device number it no longer has, as after such a reuse.
    """
    plan = stale_node_plan(tree, "pvc-reuse")
    entry = verdict(plan, Kind.NODE, "pvc-reuse")
    assert entry.identity.dev is not None
    inode = os.stat(tree.p("/dev/longhorn/pvc-reuse")).st_ino
    planned_dev = entry.identity.dev._replace(minor=entry.identity.dev.minor + 100)
    reused = entry._replace(identity=entry.identity._replace(dev=planned_dev, inode=inode))
    plan = plan._replace(entries=tuple(reused if e is entry else e for e in plan.entries))
    outcome = execute(tree, plan)[(Kind.NODE, "pvc-reuse")]
    assert outcome.result.value == "skipped" and "replaced since" in outcome.detail
    assert os.path.exists(tree.p("/dev/longhorn/pvc-reuse"))


def test_a_node_swapped_for_a_link_to_itself_is_not_followed(tree: PinTree) -> None:
    """Never follow a link: the planned node moved aside and a symlink of its name points at it."""
    plan = stale_node_plan(tree, "pvc-link")
    os.rename(tree.p("/dev/longhorn/pvc-link"), tree.p("/dev/longhorn/pvc-link.moved"))
    tree.add_node_symlink("pvc-link", "pvc-link.moved")
    outcome = execute(tree, plan)[(Kind.NODE, "pvc-link")]
    assert outcome.result.value == "skipped" and "no longer a block node" in outcome.detail
    assert os.path.islink(tree.p("/dev/longhorn/pvc-link"))


def test_a_node_adopted_by_a_device_made_after_its_dm_went_stays(tree: PinTree) -> None:
    """Rule node-name-matches-device at the re-check: dm `pvc-adopt` goes, a new instance-manager
    makes `pvc-adopt` again on the freed minor and keeps the node it finds (go-spdk-helper loads an
    existing endpoint); the node is not unlinked.

    Same node inode and number as planned, and the new device is idle: only what the number is
    now (a device again, where the plan expected none) tells.
    """
    volume = tree.add_longhorn_volume("pvc-adopt")
    plan = plan_of(tree)
    new_head = longhorn_namespace(tree, "pvc-adopt-2")
    made: list[str] = []

    def new_instance_manager(entry: Entry, outcome: ActionOutcome) -> None:
        if (entry.kind, outcome.result.value) == (Kind.DM, "removed"):
            made.append(HostTree(tree.root).add_dm("pvc-adopt", [(0, VOLUME_SECTORS, "linear",
                                                                  f"{new_head} 0")])[1])

    outcomes = execute(tree, plan, new_instance_manager)
    assert made == [volume.dm_dev]  # the premise: dm handed the freed minor to the new device
    node = outcomes[(Kind.NODE, "pvc-adopt")]
    assert node.result.value == "skipped" and "a device was made or replaced since" in node.detail
    assert os.path.exists(tree.p("/dev/longhorn/pvc-adopt"))


def test_an_orphan_node_whose_number_a_device_of_its_name_took_stays(tree: PinTree) -> None:
    """A node planned as pointing at a free number: a dm device of its name took the number since."""
    plan = stale_node_plan(tree, "pvc-taken")
    dev = verdict(plan, Kind.NODE, "pvc-taken").identity.dev
    head = longhorn_namespace(tree, "pvc-taken")
    assert tree.add_dm("pvc-taken", [(0, VOLUME_SECTORS, "linear", f"{head} 0")])[1] == str(dev)
    node = execute(tree, plan)[(Kind.NODE, "pvc-taken")]
    assert node.result.value == "skipped" and "now dm-" in node.detail
    assert os.path.exists(tree.p("/dev/longhorn/pvc-taken"))


def test_a_node_on_a_reused_number_whose_device_was_replaced_by_one_of_its_name_stays(tree: PinTree) -> None:
    """The dm name in what a number is: same kernel name dm-N, but now the node's own volume.

    The node pvc-lost points at the number another volume's device (pvc-other) now has: a
    leftover of its own. pvc-other goes and pvc-lost is made on the freed minor: dm-N again.
    """
    _, other_dev = tree.add_dm("pvc-other", [(0, VOLUME_SECTORS, "linear", "7:99 0")])
    tree.add_node("pvc-lost", other_dev)
    plan = plan_of(tree)
    entry = verdict(plan, Kind.NODE, "pvc-lost")
    assert entry.verdict is Verdict.STALE and "reused" in entry.reason
    head = longhorn_namespace(tree, "pvc-lost")
    tree.remove_dm("pvc-other")
    assert tree.add_dm("pvc-lost", [(0, VOLUME_SECTORS, "linear", f"{head} 0")])[1] == other_dev
    node = execute(tree, plan)[(Kind.NODE, "pvc-lost")]
    assert node.result.value == "skipped" and "(dm pvc-lost)" in node.detail
    assert os.path.exists(tree.p("/dev/longhorn/pvc-lost"))


def test_a_controller_connected_to_the_subsystem_after_planning_keeps_it(tree: PinTree) -> None:
    """The NVMe re-check: a new instance-manager connected the same NQN again (a controller more)."""
    volume = tree.add_longhorn_volume("pvc-reconnect")
    plan = plan_of(tree)
    nvme = verdict(plan, Kind.NVME, volume.nqn)
    assert nvme.verdict is Verdict.STALE and nvme.identity.controllers == (volume.controller,)
    new_controller = tree.connect(volume.nqn)[1]
    outcome = execute(tree, plan)[(Kind.NVME, volume.nqn)]
    assert outcome.result.value == "skipped" and "re-connected since" in outcome.detail
    assert {volume.controller, new_controller} <= set(os.listdir(tree.p("/sys/class/nvme")))


def test_a_subsystem_made_again_under_another_name_keeps_its_controller(tree: PinTree) -> None:
    """The NVMe re-check: the planned subsystem went, and the NQN came back as a new subsystem."""
    volume = tree.add_longhorn_volume("pvc-resubsys", with_node=False)
    plan = plan_of(tree)
    tree.remove_dm("pvc-resubsys")  # the dm entry is then "already gone"
    tree.disconnect(volume.nqn)
    # Another subsystem takes the freed number and keeps it (a dm device holds its gone head),
    # while its controller goes: the NQN's new subsystem differs, its controller's name does not.
    _, _, head, head_dev = tree.connect(OTHER_VENDOR_NQN)
    tree.add_dm("other-user", [(0, VOLUME_SECTORS, "linear", f"{head_dev} 0")], slaves=(head,))
    tree.disconnect(OTHER_VENDOR_NQN)
    subsystem, controller = tree.connect(volume.nqn)[:2]
    assert subsystem != volume.subsystem and controller == volume.controller
    outcome = execute(tree, plan)[(Kind.NVME, volume.nqn)]
    assert outcome.result.value == "skipped" and "re-connected since" in outcome.detail
    assert os.listdir(tree.p("/sys/class/nvme"))


def stale_volume_plan(tree: PinTree, name: str) -> Plan:
    """An idle Longhorn leftover: dm, node and controller all stale."""
    tree.add_longhorn_volume(name)
    plan = plan_of(tree)
    assert {e.verdict for e in plan.entries} == {Verdict.STALE} and len(plan.entries) == 3
    return plan


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_leftover_whose_backing_came_back_on_the_same_number_stays(tree: PinTree,
                                                                     encrypted: bool) -> None:
    """The backing found gone: a new instance-manager reconnected the NQN after the runtime's
    second answer, the kernel gave the namespace its old number, and the old table fits it."""
    volume = tree.add_longhorn_volume("pvc-back", backing_gone=True, encrypted=encrypted)
    plan = plan_of(tree)
    assert {e.verdict for e in plan.entries} == {Verdict.STALE}
    head, head_dev = tree.connect(volume.nqn)[2:]
    assert (head, head_dev) == (volume.backing, volume.backing_dev)  # the lowest free numbers
    outcomes = execute(tree, plan)
    first = outcomes[(Kind.DM, "pvc-back-encrypted" if encrypted else "pvc-back")]
    assert first.result.value == "skipped" and "gone when planned" in first.detail
    assert removed_dm(tree) == []
    assert os.path.exists(tree.p("/dev/longhorn/pvc-back"))


def test_an_instance_manager_seen_during_a_long_sweep_stops_its_removals(tree: PinTree) -> None:
    """The runtime is asked again before a removal once its last answer is old (each clock
    reading here takes 0.3 s): an instance-manager that started meanwhile stops every removal
    after it."""
    plan = stale_volume_plan(tree, "pvc-long")
    now = [0.0]

    def tick() -> float:
        now[0] += 0.3
        return now[0]

    def ask() -> RuntimeView:  # the newcomer is there once the dm device went
        return im_started_after_the_tree() if removed_dm(tree) else runtime_with()

    confirmed = RuntimeConfirmation(runtime_with(), ask, False, clock=tick)
    actor = Actor(HostRoot(tree.root), ToolRunner(60), tree.dm_control(), use_tools=True,
                  runtime_changed=confirmed.changed)
    outcomes = {(o.kind, o.name): o for o in actor.execute(plan, dry_run=False)}
    assert outcomes[(Kind.DM, "pvc-long")].result.value == "removed"
    node = outcomes[(Kind.NODE, "pvc-long")]
    assert node.result.value == "skipped" and "started during the sweep" in node.detail
    assert os.path.exists(tree.p("/dev/longhorn/pvc-long"))


def test_a_removal_rests_on_a_runtime_answer_asked_after_its_recheck(
        tree: PinTree, monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-check that reads every process's tables can take longer than RECONFIRM_AFTER_S: the
    runtime is asked again after it, under Longhorn's locks, right before the removal."""
    plan = stale_volume_plan(tree, "pvc-slow")
    now = [0.0]
    answers = [runtime_with(), im_started_after_the_tree()]
    asked: list[float] = []

    def ask() -> RuntimeView:
        asked.append(now[0])
        return answers.pop(0) if len(answers) > 1 else answers[0]

    confirmed = RuntimeConfirmation(runtime_with(), ask, False, clock=lambda: now[0])
    assert confirmed.changed() == ""  # run_sweep's confirmation, at 0 s
    read_usage = lhsweep.act.read_usage

    def slow_usage(host: HostRoot) -> Any:  # a busy node's /proc
        now[0] += 1.5
        return read_usage(host)

    monkeypatch.setattr(lhsweep.act, "read_usage", slow_usage)
    actor = Actor(HostRoot(tree.root), ToolRunner(60), tree.dm_control(), use_tools=True,
                  runtime_changed=confirmed.changed)
    outcomes = {(o.kind, o.name): o for o in actor.execute(plan, dry_run=False)}
    nvme = next(o for (kind, _), o in outcomes.items() if kind is Kind.NVME)
    assert asked[0] == 0.0 and len(asked) == 2, asked
    assert nvme.result.value == "skipped" and "started during the sweep" in nvme.detail


def test_an_encrypted_child_whose_parent_was_reloaded_onto_a_new_connection_stays(tree: PinTree) -> None:
    """The backing found gone; the engine reconnects on another number (the old one is taken) and
    go-spdk-helper reloads the parent's table onto it: the child's own table and the old number
    say nothing, the parent's table does."""
    volume = tree.add_longhorn_volume("pvc-re", backing_gone=True, encrypted=True)
    plan = plan_of(tree)
    assert {e.verdict for e in plan.entries} == {Verdict.STALE}
    tree.connect(OTHER_VENDOR_NQN)  # takes the old number
    new_dev = tree.connect(volume.nqn)[3]
    tree.disconnect(OTHER_VENDOR_NQN)
    assert new_dev != volume.backing_dev
    tree.set_dm("pvc-re", targets=[[0, VOLUME_SECTORS, "linear", f"{new_dev} 0"]])
    outcomes = execute(tree, plan)
    child = outcomes[(Kind.DM, "pvc-re-encrypted")]
    assert child.result.value == "skipped" and "its parent dm pvc-re: its table changed" in child.detail
    assert removed_dm(tree) == []


def test_a_dm_device_recreated_with_another_number_between_plan_and_act_stays(tree: PinTree) -> None:
    """The device number: the same name and table, but a new device (another minor)."""
    plan = stale_volume_plan(tree, "pvc-new")
    record = tree.dm("pvc-new")
    tree.remove_dm("pvc-new")
    tree.add_plain_linear_on_loop("filler")
    tree.add_dm("pvc-new", record["targets"])
    outcomes = execute(tree, plan)
    dm = outcomes[(Kind.DM, "pvc-new")]
    assert dm.result.value == "skipped" and "re-created since" in dm.detail
    assert removed_dm(tree) == []


def make_busy(tree: PinTree, name: str, how: str) -> None:
    """Change exactly one fact of the dm device `name` that makes it busy."""
    record = tree.dm(name)
    if how == "open":
        tree.set_dm(name, open=1)
    elif how == "mounted":
        # In a private mount namespace: absent from PID 1's mountinfo, yet one open more, as on a
        # real kernel (the re-check reads the kernel's count, the plan names the mount).
        tree.add_process(4242, "backup", mnt_ns="4026532999")
        tree.add_mount(record["dev"], "/mnt/late", pid=4242)
        tree.set_dm(name, open=record["open"] + 1)
    elif how == "held":
        tree.add_dm("late-holder", [(0, 8, "linear", f"{record['dev']} 0")], slaves=(record["kernel"],))
    else:
        tree.set_dm(name, **{how: True})


@pytest.mark.parametrize("how", ["open", "mounted", "held", "suspended", "deferred_remove"])
def test_a_dm_device_that_became_busy_after_planning_stays(tree: PinTree, how: str) -> None:
    """Never touch a busy device, as seen at the re-check: one busy fact at a time."""
    plan = stale_volume_plan(tree, "pvc-busy")
    make_busy(tree, "pvc-busy", how)
    outcomes = execute(tree, plan)
    dm = outcomes[(Kind.DM, "pvc-busy")]
    assert dm.result.value == "skipped" and "became busy" in dm.detail
    assert removed_dm(tree) == []
    # What waits for the dm device waits on: the node stays, the controller stays connected.
    assert "waits for dm pvc-busy" in outcomes[(Kind.NODE, "pvc-busy")].detail
    assert os.path.exists(tree.p("/dev/longhorn/pvc-busy"))
    assert outcomes[(Kind.NVME, f"{LONGHORN_PREFIX}volume-pvc-busy")].result.value == "skipped"


def test_an_unreadable_table_at_the_recheck_keeps_the_device_and_what_waits_for_it(tree: PinTree) -> None:
    """Fail closed: a dm control that fails right before removal is not 'already gone'."""
    plan = stale_volume_plan(tree, "pvc-eio")
    tree.kernel.failing = True
    outcomes = execute(tree, plan)
    dm = outcomes[(Kind.DM, "pvc-eio")]
    assert dm.result.value == "skipped" and "could not be read" in dm.detail
    assert removed_dm(tree) == []
    assert outcomes[(Kind.NODE, "pvc-eio")].result.value == "skipped"
    assert os.path.exists(tree.p("/dev/longhorn/pvc-eio"))


@contextlib.contextmanager
def held_lock(tree: PinTree, lock: str) -> Iterator[None]:
    """The flock `lock` (a host path) held, as another process (go-spdk-helper) would hold it."""
    os.makedirs(os.path.dirname(tree.p(lock)), exist_ok=True)
    fd = os.open(tree.p(lock), os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises when something holds it already
        yield
    finally:
        os.close(fd)


@pytest.mark.parametrize("lock", ["/run/longhorn/spdk-pvc-lock.lock", "/run/longhorn-spdk.lock"])
def test_a_held_longhorn_lock_keeps_the_volume(tree: PinTree, lock: str) -> None:
    """Longhorn's per-volume lock and its older global lock: either one held skips the volume."""
    plan = stale_volume_plan(tree, "pvc-lock")
    with held_lock(tree, lock):
        outcomes = execute(tree, plan)
    dm = outcomes[(Kind.DM, "pvc-lock")]
    assert dm.result.value == "skipped" and f"Longhorn lock {lock} is held" in dm.detail
    assert removed_dm(tree) == []
    assert os.path.exists(tree.p("/dev/longhorn/pvc-lock"))


@pytest.mark.parametrize("suffix", ENGINE_SUFFIXES)
def test_the_volume_lock_of_an_engine_nqn_keeps_its_controller(tree: PinTree, suffix: str) -> None:
    """The lock a controller is disconnected under is its volume's, whatever the engine's name."""
    nqn, _, _ = bare_namespace(tree, "pvc-lk", suffix)  # its dm device and node went earlier
    plan = plan_of(tree)
    with held_lock(tree, "/run/longhorn/spdk-pvc-lk.lock"):  # go-spdk-helper at work on pvc-lk
        outcome = execute(tree, plan)[(Kind.NVME, nqn)]
    assert outcome.result.value == "skipped", outcome.detail
    assert "Longhorn lock /run/longhorn/spdk-pvc-lk.lock is held" in outcome.detail
    assert tree.subsystem_of(nqn) is not None


@pytest.mark.parametrize("suffix", ["pvc-x", "pvc-x-e-01", "pvc-x-e-0123abc", "pvc-x-r-0123abcd",
                                    "volume-pvc-x-e-0"])  # 1.12's pvc-x-e-0, or volume-pvc-x's engine
def test_an_nqn_suffix_of_no_known_shape_names_no_volume(tree: PinTree, suffix: str) -> None:
    """Neither its volume's lock nor its exclusions can be told: never read as a volume name."""
    nqn, _, _ = bare_namespace(tree, "", suffix)
    nvme = verdict(plan_of(tree), Kind.NVME, nqn)
    assert nvme.verdict is Verdict.FOREIGN and "not Longhorn-shaped" in nvme.reason


def test_a_namespace_mounted_after_planning_keeps_its_controller(tree: PinTree) -> None:
    """The controller's re-check: its namespace was mounted directly (a backup) after planning."""
    volume = tree.add_longhorn_volume("pvc-ns")
    plan = plan_of(tree)
    tree.add_mount(volume.backing_dev, "/mnt/backup")
    outcomes = execute(tree, plan)
    assert outcomes[(Kind.DM, "pvc-ns")].result.value == "removed"
    nvme = outcomes[(Kind.NVME, volume.nqn)]
    assert nvme.result.value == "skipped" and "became busy" in nvme.detail
    assert tree.subsystem_of(volume.nqn) is not None and os.listdir(tree.p("/sys/class/nvme"))


def test_a_subsystem_unreadable_at_the_recheck_is_skipped_not_called_gone(tree: PinTree) -> None:
    """The controller's re-check cannot read the subsystem: not "already gone", and nothing deleted."""
    volume = tree.add_longhorn_volume("pvc-reread")
    plan = plan_of(tree)
    tree.unlink(f"/sys/class/nvme-subsystem/{volume.subsystem}/subsysnqn")
    nvme = execute(tree, plan)[(Kind.NVME, volume.nqn)]
    assert nvme.result.value == "skipped" and "cannot re-read" in nvme.detail
    assert os.listdir(tree.p("/sys/class/nvme"))


def test_a_stopping_actor_starts_nothing(tree: PinTree) -> None:
    """Stop: once lhsweep is stopping, no further removal starts."""
    plan = stale_volume_plan(tree, "pvc-stop")
    actor = Actor(HostRoot(tree.root), ToolRunner(60), tree.dm_control(), should_stop=lambda: True,
                  use_tools=True)
    outcomes = actor.execute(plan, dry_run=False)
    assert {o.result.value for o in outcomes} == {"skipped"}
    assert all("stopping" in o.detail for o in outcomes)
    assert removed_dm(tree) == []


class ReloadWhileLocking(Actor):
    """An actor whose lock taking races with an instance-manager reloading the device's table."""

    reload_to = ""

    @contextlib.contextmanager
    def _longhorn_locks(self, volume: str) -> Iterator[None]:
        tree = HostTree(self.host.root)
        if volume in tree.state["devices"]:
            tree.set_dm(volume, targets=[[0, VOLUME_SECTORS, "linear", f"{self.reload_to} 0"]])
        with super()._longhorn_locks(volume):
            yield


def test_a_table_reloaded_while_the_lock_is_taken_keeps_the_device(tree: PinTree) -> None:
    """The re-check under Longhorn's lock: a change between the first re-check and the lock counts."""
    plan = stale_volume_plan(tree, "pvc-race")
    actor = ReloadWhileLocking(HostRoot(tree.root), ToolRunner(60), tree.dm_control())
    actor.reload_to = tree.connect(f"{LONGHORN_PREFIX}volume-pvc-race-2")[3]
    outcomes = {(o.kind, o.name): o for o in actor.execute(plan, dry_run=False)}
    dm = outcomes[(Kind.DM, "pvc-race")]
    assert dm.result.value == "skipped" and "table changed" in dm.detail
    assert removed_dm(tree) == []


def test_a_device_renamed_while_it_is_rechecked_stays(tree: PinTree) -> None:
    """The control still answers for the name, but sysfs at that number already shows the new name."""
    plan = stale_volume_plan(tree, "pvc-old-name")
    kernel_dir = f"/sys/devices/virtual/block/{tree.dm('pvc-old-name')['kernel']}"
    tree.write(f"{kernel_dir}/dm/name", "pvc-new-name\n")
    dm = execute(tree, plan)[(Kind.DM, "pvc-old-name")]
    assert dm.result.value == "skipped" and "could not be read" in dm.detail
    assert removed_dm(tree) == []


def test_a_node_whose_device_was_mounted_after_planning_stays(tree: PinTree) -> None:
    """The node re-check re-reads usage: its device number was mounted after planning."""
    tree.add_node("pvc-orphan", "253:77")
    plan = plan_of(tree)
    assert verdict(plan, Kind.NODE, "pvc-orphan").verdict is Verdict.STALE
    tree.add_mount("253:77", "/mnt/late")
    node = execute(tree, plan)[(Kind.NODE, "pvc-orphan")]
    assert node.result.value == "skipped" and "became busy" in node.detail
    assert os.path.exists(tree.p("/dev/longhorn/pvc-orphan"))


def test_mounts_unreadable_at_the_recheck_keep_the_node(tree: PinTree) -> None:
    """Fail closed at the re-check: mounts that can no longer be read are not 'no mounts'."""
    tree.add_node("pvc-blind", "253:78")
    plan = plan_of(tree)
    os.unlink(tree.p("/proc/1/mountinfo"))
    node = execute(tree, plan)[(Kind.NODE, "pvc-blind")]
    assert node.result.value == "skipped" and "cannot tell whether it is in use" in node.detail
    assert os.path.exists(tree.p("/dev/longhorn/pvc-blind"))


def test_a_name_longhorn_never_gives_never_becomes_a_lock_path() -> None:
    """Only a Longhorn-shaped volume name is turned into a path under /run/longhorn."""
    assert volume_lock_path("pvc-1") == "/run/longhorn/spdk-pvc-1.lock"
    with pytest.raises(ValueError, match="not a Longhorn volume name"):
        volume_lock_path("../../etc/x")
