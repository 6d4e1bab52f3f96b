"""The dmsetup-backed DmControl against the fake dmsetup, choosing a DmControl, and re-checks."""

from __future__ import annotations

import json
import os
import time
from typing import Optional, Union

import pytest

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.inventory import (
    DmsetupDmControl,
    IoctlDmControl,
    read_dm_device,
    read_inventory,
    select_dm_control,
)
from lhsweep.inventory.dmsetup import parse_info, parse_tables
from lhsweep.model import DevNum, DmTarget
from lhsweep.tools import ToolResult, ToolRunner
from tests.hosttree import FAKE_KEY, HostTree, fake_host

pytestmark = pytest.mark.process


@pytest.fixture
def tree(tmp_path, monkeypatch: pytest.MonkeyPatch) -> HostTree:
    return fake_host(str(tmp_path), monkeypatch)


def calls(tree: HostTree) -> list[list[str]]:
    path = tree.p("/.fake/calls.log")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


WHY = "(changed meanwhile, or a dmsetup listing that cannot be told apart)"


def test_inventory_asks_dmsetup_twice_whatever_the_device_count(tree: HostTree) -> None:
    with tree.batch():
        for i in range(30):
            tree.add_longhorn_volume(f"pvc-{i}", encrypted=i % 3 == 0)
    inv = read_inventory(HostRoot(tree.root), DmsetupDmControl())
    assert len(inv.dm_devices) == 40 and inv.problems == ()
    assert all(d.targets is not None and d.open_count is not None for d in inv.dm_devices)
    assert calls(tree) == [["dmsetup", "info"], ["dmsetup", "table"]]


def test_read_all_and_read_one_agree(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1", encrypted=True, deferred_remove=True)
    control = DmsetupDmControl()
    every = control.read_all()
    assert set(every) == {"pvc-1", "pvc-1-encrypted"}
    one = control.read_one("pvc-1")
    assert one == every["pvc-1"]
    assert (one.dev, one.open_count, one.deferred_remove, one.suspended) == (
        DevNum.parse(vol.dm_dev), 1, True, False)
    assert one.targets == (DmTarget(0, 2 * 1024 * 1024, "linear", DevNum.parse(vol.backing_dev), 0),)
    assert control.read_one("absent") is None


def test_a_hung_dmsetup_is_cut_off_and_reported(tree: HostTree) -> None:
    tree.add_longhorn_volume("pvc-1")
    tree.set_tool(hang_seconds=30)
    started = time.monotonic()
    inv = read_inventory(HostRoot(tree.root), DmsetupDmControl(ToolRunner(0.5)))
    assert time.monotonic() - started < 10
    (dm,) = inv.dm_devices
    assert dm.targets is None and dm.open_count is None
    assert any("timed out" in p and "dm tables and open counts unknown" in p for p in inv.problems)


def test_a_failing_dmsetup_leaves_tables_unknown(tree: HostTree) -> None:
    tree.add_longhorn_volume("pvc-1")
    tree.set_tool(fail="Permission denied")
    inv = read_inventory(HostRoot(tree.root))
    assert inv.dm_devices[0].targets is None
    (problem,) = inv.problems
    assert problem.startswith("dm control (dmsetup): dmsetup info: ")
    assert "dmsetup exited 1: Command failed.; dm tables and open counts unknown" in problem


def test_no_dm_control_at_all_is_a_problem(tree: HostTree, monkeypatch: pytest.MonkeyPatch) -> None:
    tree.add_longhorn_volume("pvc-1")
    monkeypatch.setenv("PATH", str(tree.p("/nonexistent")))
    inv = read_inventory(HostRoot(tree.root))
    assert inv.dm_devices[0].targets is None
    assert inv.problems == (
        "dm control: /dev/mapper/control is not a char device and dmsetup is not on PATH; "
        "dm tables and open counts unknown",)


def test_device_changing_between_sysfs_and_dmsetup_is_unknown(tree: HostTree) -> None:
    tree.add_longhorn_volume("pvc-1")
    tree.add_longhorn_volume("pvc-2")
    del tree.state["devices"]["pvc-1"]  # gone from the control interface, still in sysfs
    tree.dm("pvc-2")["dev"] = "253:77"
    tree.save()
    inv = read_inventory(HostRoot(tree.root))
    assert [d.targets for d in inv.dm_devices] == [None, None]
    assert f"dm pvc-1: in sysfs, but the dm control gave no whole table for it {WHY}" in inv.problems
    assert f"dm pvc-2: in sysfs, but the dm control gave no whole table for it {WHY}" in inv.problems


def test_select_prefers_the_ioctl_then_dmsetup(tree: HostTree) -> None:
    host = HostRoot(tree.root)
    control, why = select_dm_control(host, which=lambda _: "/usr/sbin/dmsetup")
    assert isinstance(control, DmsetupDmControl) and why == ""
    assert select_dm_control(host, which=lambda _: None)[0] is None
    os.makedirs(tree.p("/dev/mapper"))
    os.mknod(tree.p("/dev/mapper/control"), 0o600 | 0o020000, os.makedev(10, 236))
    control, _ = select_dm_control(host, which=lambda _: None)
    assert isinstance(control, IoctlDmControl) and control.control_path == tree.p("/dev/mapper/control")


def test_read_dm_device_follows_the_device_through_removal_and_reuse(tree: HostTree) -> None:
    host = HostRoot(tree.root)
    vol = tree.add_longhorn_volume("pvc-1", encrypted=True)
    dm = read_dm_device(host, "pvc-1")
    assert dm is not None and dm.dev == DevNum.parse(vol.dm_dev) and dm.open_count == 1
    assert dm.holders == (tree.dm("pvc-1-encrypted")["kernel"],)
    assert calls(tree) == [["dmsetup", "info", "--", "pvc-1"], ["dmsetup", "table", "--", "pvc-1"]]
    tree.remove_dm("pvc-1-encrypted")
    tree.remove_dm("pvc-1")
    tree.remove_node("pvc-1")
    assert read_dm_device(host, "pvc-1") is None
    tree.add_longhorn_volume("other")  # takes the lowest free minor, as dm does
    tree.add_longhorn_volume("pvc-1")
    again = read_dm_device(host, "pvc-1")
    assert again is not None and again.dev != DevNum.parse(vol.dm_dev) and again.open_count == 0


def test_read_dm_device_without_a_working_control_reads_sysfs_only(tree: HostTree,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    host = HostRoot(tree.root)
    vol = tree.add_longhorn_volume("pvc-1")
    tree.set_tool(fail="boom")
    dm = read_dm_device(host, "pvc-1")
    assert dm is not None and dm.dev == DevNum.parse(vol.dm_dev)
    assert (dm.targets, dm.open_count) == (None, None)
    monkeypatch.setenv("PATH", str(tree.p("/nonexistent")))
    assert read_dm_device(host, "pvc-1") == dm
    assert read_dm_device(host, "absent") is None


def test_read_dm_device_when_sysfs_disagrees_is_unknown(tree: HostTree) -> None:
    tree.add_longhorn_volume("pvc-1")
    tree.dm("pvc-1")["dev"] = "253:42"
    tree.save()
    dm = read_dm_device(HostRoot(tree.root), "pvc-1")
    assert dm is not None and (dm.dev, dm.targets, dm.open_count) == (DevNum(253, 42), None, None)


def test_dmsetup_output_parsers() -> None:
    info = (
        "Name:              a\nState:             SUSPENDED (READ-ONLY)\nRead Ahead:        256\n"
        "Tables present:    LIVE\nOpen count:        4\nEvent number:      0\n"
        "Major, minor:      253, 12\nNumber of targets: 2\nUUID: LVM-xyz\n\n"
        "Name:              b\nState:             ACTIVE (DEFERRED REMOVE)\nTables present:    None\n"
        "Open count:        0\nEvent number:      3\nMajor, minor:      254, 0\nNumber of targets: 0\n\n"
    )
    a, b = parse_info(info)
    assert (a.name, a.dev, a.open_count, a.uuid, a.target_count) == ("a", DevNum(253, 12), 4, "LVM-xyz", 2)
    state = a.with_targets(())
    assert state.suspended and not state.deferred_remove
    assert b.with_targets(()).deferred_remove
    tables = parse_tables(
        f"a: 0 10 linear 8:0 0\na: 10 20 crypt aes {FAKE_KEY} 0 8:16 0\nb:\nc: 0 5 error\n")
    assert tables == {
        "a": (DmTarget(0, 10, "linear", DevNum(8, 0), 0), DmTarget(10, 20, "crypt", DevNum(8, 16))),
        "b": (),
        "c": (DmTarget(0, 5, "error"),),
    }
    assert FAKE_KEY not in repr(tables)
    assert parse_info("No devices found\n") == [] and parse_tables("No devices found\n") == {}
    with pytest.raises(HostReadError, match="bad 'Open count' line for a"):
        parse_info("Name: a\nOpen count: many\n")
    with pytest.raises(HostReadError, match="unreadable line for a"):
        parse_tables("a: zero 10 linear 8:0 0\n")


# ---------------------------------------------------------------- the two listings must agree


def info_of(name: str, minor: int, targets: Optional[int]) -> str:
    """One `dmsetup info` block; `targets` None leaves out the "Number of targets" line."""
    count = "" if targets is None else f"Number of targets: {targets}\n"
    return (f"Name:              {name}\nState:             ACTIVE\nRead Ahead:        256\n"
            f"Tables present:    {'LIVE' if targets else 'None'}\nOpen count:        0\n"
            f"Event number:      0\nMajor, minor:      253, {minor}\n{count}UUID:\n\n")


class Answers(ToolRunner):
    """dmsetup answering `info` and `table` with fixed texts."""

    def __init__(self, info: str, table: str) -> None:
        super().__init__(1)
        self.texts = {"info": info, "table": table}

    def run(self, argv: Union[list[str], tuple[str, ...]], timeout: Optional[float] = None) -> ToolResult:
        return ToolResult(tuple(argv), 0, self.texts[argv[1]], "", 0.0)


def read_all(info: str, table: str) -> dict[str, Optional[tuple[DmTarget, ...]]]:
    return {name: state.targets for name, state in DmsetupDmControl(Answers(info, table)).read_all().items()}


PVC = info_of("pvc-1", 2, 1)
PVC_TABLE = "pvc-1: 0 2048 linear 259:1 0\n"
EVIL = "x: 0 2048 linear 259:1 0"  # a whole `dmsetup table` line, as a device's name


def test_a_name_holding_a_table_line_cannot_lend_a_segment_to_another_device() -> None:
    # x has no table; the device named EVIL has one `zero` segment, which dmsetup prints as
    # "x: 0 2048 linear 259:1 0: 0 2048 zero": split at its first ": ", x over a Longhorn namespace.
    states = read_all(info_of("x", 0, 0) + info_of(EVIL, 1, 1) + PVC,
                      f"x: \n{EVIL}: 0 2048 zero \n{PVC_TABLE}")
    assert states == {"pvc-1": (DmTarget(0, 2048, "linear", DevNum(259, 1), 0),)}


def test_a_colon_name_makes_its_starts_unknown_even_when_the_counts_agree() -> None:
    # x counted one segment in `info` but its own line is missing (it changed between the two
    # calls): the one line credited to it is EVIL's. Only the name tells.
    states = read_all(info_of("x", 0, 1) + info_of(EVIL, 1, 1) + info_of("b:c", 3, 1) + PVC,
                      f"{EVIL}: 0 2048 zero \nb:c: 0 8 zero \n{PVC_TABLE}")
    assert states == {"pvc-1": (DmTarget(0, 2048, "linear", DevNum(259, 1), 0),)}


@pytest.mark.parametrize(("counted", "table"), [
    (1, "pvc-1: 0 1024 linear 259:1 0\npvc-1: 1024 1024 linear 259:1 1024\n"),  # one more listed
    (2, PVC_TABLE),                                                              # one fewer
    (None, PVC_TABLE),                                                           # no count at all
    (0, PVC_TABLE),
])
def test_a_segment_count_other_than_infos_makes_the_device_unknown(counted: Optional[int],
                                                                  table: str) -> None:
    states = read_all(info_of("pvc-1", 2, counted) + info_of("other", 3, 1),
                      table + "other: 0 8 zero \n")
    assert states == {"other": (DmTarget(0, 8, "zero"),)}


def test_read_one_refuses_a_segment_count_other_than_infos() -> None:
    control = DmsetupDmControl(Answers(info_of("pvc-1", 2, 2), "0 2048 linear 259:1 0\n"))
    with pytest.raises(HostReadError) as caught:
        control.read_one("pvc-1")
    assert str(caught.value) == "dmsetup table pvc-1: 1 segment(s), but dmsetup info counts 2"
    agreeing = DmsetupDmControl(Answers(info_of("pvc-1", 2, 1), "0 2048 linear 259:1 0\n"))
    one = agreeing.read_one("pvc-1")
    assert one is not None and one.targets == (DmTarget(0, 2048, "linear", DevNum(259, 1), 0),)


# A device named with newlines prints lines of its own choosing into `dmsetup info`: here a block
# claiming that pvc-1 (open in truth) is closed, with the evil device's own lines after it.
FORGED = "zzz\n\nName: pvc-1\nState: ACTIVE\nOpen count: 0\nMajor, minor: 253, 2\nNumber of targets: 1"


@pytest.mark.parametrize(("listing", "why"), [
    (info_of("pvc-1", 2, 1).replace("Open count:        0", "Open count:        1")
     + info_of(FORGED, 9, 1), "'pvc-1' listed twice"),
    (info_of("zzz\n\nName: ghost\nState: ACTIVE", 9, 1), "'State' twice for ghost"),
    (info_of("pvc-1\nevil", 9, 1), "a line that is no 'Key: value' ('evil')"),
], ids=["name-twice", "key-twice", "keyless-line"])
def test_a_listing_a_newline_name_forged_lines_into_is_unknown_as_a_whole(listing: str, why: str) -> None:
    with pytest.raises(HostReadError) as caught:
        read_all(listing, PVC_TABLE)
    assert str(caught.value) == f"dmsetup info: {why}"
