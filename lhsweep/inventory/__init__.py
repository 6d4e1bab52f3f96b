"""The host inventory: dm devices, /dev/longhorn entries, NVMe subsystems, ublk devices, mounts."""

from __future__ import annotations

import shutil
import stat
from typing import Callable, Optional, TypeVar

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.inventory.dmcontrol import DmControl, DmState
from lhsweep.inventory.dmioctl import IoctlDmControl
from lhsweep.inventory.dmsetup import DmsetupDmControl
from lhsweep.inventory.nodes import read_node, read_nodes
from lhsweep.inventory.nvme import read_subsystems
from lhsweep.inventory.records import read_frontend_records
from lhsweep.inventory.sysfs import (
    DmLinks,
    DmSysfs,
    Problems,
    find_dm_kernel_name,
    kernel_name_of,
    read_block_devices,
    read_dm_links,
    read_dm_sysfs,
)
from lhsweep.inventory.users import read_loops, read_mount_namespaces, read_openers
from lhsweep.longhorn import DATA_PATH
from lhsweep.model import BlockDevice, DevNum, DmDevice, Fact, Inventory, Unknown
from lhsweep.usage import Usage

__all__ = [
    "DmControl",
    "DmState",
    "DmsetupDmControl",
    "IoctlDmControl",
    "read_dm_device",
    "read_inventory",
    "read_node",
    "read_subsystems",
    "read_usage",
    "select_dm_control",
]

DM_CONTROL_NODE = "/dev/mapper/control"
_T = TypeVar("_T")


def select_dm_control(host: HostRoot, which: Callable[[str], Optional[str]] = shutil.which,
                      ) -> tuple[Optional[DmControl], str]:
    """The ioctl when <root>/dev/mapper/control is a char device, else dmsetup on PATH, else None.

    The second value says why there is none ("" when there is one).
    """
    st = host.lstat(DM_CONTROL_NODE)
    if st is not None and stat.S_ISCHR(st.st_mode):
        return IoctlDmControl(host.path(DM_CONTROL_NODE)), ""
    dmsetup = which("dmsetup")
    if dmsetup:
        return DmsetupDmControl(dmsetup=dmsetup), ""
    return None, (f"dm control: {DM_CONTROL_NODE} is not a char device and dmsetup is not on PATH; "
                  "dm tables and open counts unknown")


def read_inventory(host: HostRoot, dm_control: Optional[DmControl] = None,
                   longhorn_data_path: str = DATA_PATH, claims: str = "") -> Inventory:
    """Read everything the plan needs from the host; a fact that cannot be read is Unknown (and named
    in `problems`). `claims` says why Longhorn namespaces are not probed for claims ("": they are)."""
    problems = Problems()
    blocks, blocks_unread = read_block_devices(host, problems)
    present = frozenset(b.name for b in blocks)
    dm_blocks = [b for b in blocks if b.name.startswith("dm-")]
    states = _dm_states(host, dm_control, problems) if dm_blocks else {}
    usage = read_usage(host, problems)
    by_dev = _by_number(states, problems) if states is not None else None
    devs = frozenset(b.dev for b in blocks)
    dm_devices = [d for d in (_dm_device(host, b, by_dev, (present, devs), problems) for b in dm_blocks)
                  if d is not None]
    nodes = _fact(problems, read_nodes, host)
    # A partial listing of /sys/dev/block cannot tell which partitions a namespace has.
    names = None if blocks_unread else {b.name: b.dev for b in blocks}
    subsystems, subsystems_unread = read_subsystems(host, problems, names, claims)
    records = _fact(problems, lambda h: read_frontend_records(h, longhorn_data_path), host)
    return Inventory(
        dm_devices=tuple(sorted(dm_devices, key=lambda d: d.name)),
        nodes=nodes,
        subsystems=subsystems,
        block_devices=blocks,
        ublk_devices=tuple(b for b in blocks if b.name.startswith("ublkb")),
        mounts=usage.mounts,
        problems=tuple(problems.lines),
        openers=usage.openers,
        loops=usage.loops,
        frontend_records=records,
        blocks_unread=blocks_unread,
        subsystems_unread=subsystems_unread,
    )


def read_usage(host: HostRoot, problems: Optional[Problems] = None) -> Usage:
    """Who uses block devices now: mounts of every namespace, open fds, loop devices."""
    problems = problems if problems is not None else Problems()
    return Usage(_fact(problems, read_mount_namespaces, host), _fact(problems, read_openers, host),
                 _fact(problems, read_loops, host))


def read_dm_device(host: HostRoot, name: str,
                   dm_control: Optional[DmControl] = None) -> Optional[DmDevice]:
    """Re-read the one dm device `name` right before acting on it; None when it is gone.

    When the control interface and sysfs disagree (it changed in between) or the control
    cannot be read, the device comes back with an unknown table and open count.
    """
    control = dm_control if dm_control is not None else select_dm_control(host)[0]
    if control is None:
        return _sysfs_only(host, name)
    try:
        state = control.read_one(name)
    except HostReadError:
        return _sysfs_only(host, name)
    if state is None:
        return None
    kernel_name = kernel_name_of(host, state.dev)
    sysfs = read_dm_sysfs(host, kernel_name, state.dev, Problems()) if kernel_name else None
    if sysfs is None or sysfs.name != name:
        return DmDevice(name, state.dev, state.uuid, state.suspended, None, None,
                        state.deferred_remove, ())
    return _from_state(state, sysfs.links, sysfs.suspended)


def _sysfs_only(host: HostRoot, name: str) -> Optional[DmDevice]:
    """The device `name` found by a sysfs scan, its table and open count unknown."""
    found = find_dm_kernel_name(host, name)
    sysfs = read_dm_sysfs(host, found[0], found[1], Problems()) if found else None
    return _unknown(sysfs) if sysfs is not None and sysfs.name == name else None


def _dm_states(host: HostRoot, dm_control: Optional[DmControl],
               problems: Problems) -> Optional[dict[str, DmState]]:
    """Every device's table and open count from the dm control, None when unreadable."""
    control, why = (dm_control, "") if dm_control is not None else select_dm_control(host)
    if control is None:
        problems.add(why)
        return None
    try:
        return control.read_all()
    except HostReadError as exc:
        problems.add(f"dm control ({control.source}): {exc}; dm tables and open counts unknown")
        return None


def _by_number(states: dict[str, DmState], problems: Problems) -> dict[DevNum, DmState]:
    """The control's devices by number; a number listed under two names is neither's (unknown).

    The kernel gives each device its own number, so two names for one come from a listing that
    was misread (dmsetup's text, where a name holding newlines can pass for a device's lines).
    """
    by_dev: dict[DevNum, DmState] = {}
    twice: dict[DevNum, list[str]] = {}
    for state in states.values():
        if state.dev in by_dev:
            twice.setdefault(state.dev, [by_dev[state.dev].name]).append(state.name)
        by_dev[state.dev] = state
    for dev, names in twice.items():
        problems.add(f"dm {dev}: the dm control lists it under {len(names)} names "
                     f"({', '.join(map(repr, names))}); its table and open count unknown")
        del by_dev[dev]
    return by_dev


def _dm_device(host: HostRoot, block: BlockDevice, by_dev: Optional[dict[DevNum, DmState]],
               present: tuple[frozenset[str], frozenset[DevNum]], problems: Problems) -> Optional[DmDevice]:
    """The dm device at `block`: the control's facts plus sysfs links, or sysfs alone.

    `present`: the kernel names and the numbers of every block device.
    """
    state = by_dev.get(block.dev) if by_dev is not None else None
    names, devs = present
    try:
        if state is not None:
            gone = any(t.backing is not None and t.backing not in devs for t in state.targets)
            return _from_state(state, read_dm_links(host, block.name, names, gone))
        sysfs = read_dm_sysfs(host, block.name, block.dev, problems, names)
    except HostReadError as exc:
        problems.add(str(exc))
        return None
    if sysfs is None:
        return None
    if by_dev is not None:
        problems.add(f"dm {sysfs.name}: in sysfs, but the dm control gave no whole table for it "
                     "(changed meanwhile, or a dmsetup listing that cannot be told apart)")
    return _unknown(sysfs)


def _from_state(state: DmState, links: DmLinks, suspended: bool = False) -> DmDevice:
    """The control interface's view of a device (name and number included) with its sysfs links."""
    return DmDevice(state.name, state.dev, state.uuid, state.suspended or suspended, state.targets,
                    state.open_count, state.deferred_remove, links.holders, links.dangling_slaves)


def _unknown(sysfs: DmSysfs) -> DmDevice:
    """A device known from sysfs only: its table and open count are unknown."""
    links = sysfs.links
    return DmDevice(sysfs.name, sysfs.dev, sysfs.uuid, sysfs.suspended, None, None, False,
                    links.holders, links.dangling_slaves)


def _fact(problems: Problems, read: Callable[[HostRoot], _T], host: HostRoot) -> Fact[_T]:
    """read(host), or Unknown (the problem recorded) when it raises HostReadError."""
    try:
        return read(host)
    except HostReadError as exc:
        problems.add(str(exc))
        return Unknown(str(exc))
