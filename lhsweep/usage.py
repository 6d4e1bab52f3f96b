"""The one definition of "in use" for every kind of block device, shared by the plan and the actions.

A device is busy when anything uses it: a mount in any mount namespace, a holder in sysfs
(dm, md, ...), a loop device backed by it, a process with an fd open on it, or (dm only) an
open count beyond the users being removed with it. A fact that could not be read makes the
answer unknown, never "not in use".

For a dm device the kernel keeps that count itself: every mount (in any mount namespace), every
open file, every loop device over it and every stacked holder is one open, and DM_DEV_REMOVE
refuses an open device atomically. `dm_kernel_use` is that state alone, what the re-check right
before a removal reads; `Usage.of_dm` adds the host's tables, which name each user for the plan.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Optional

from lhsweep.model import DevNum, DmDevice, Fact, Inventory, LoopDevice, Mount, NvmeNamespace, Opener, Unknown


@dataclass(frozen=True)
class DeviceUse:
    """Who uses one device (`busy`, naming each user) and which facts were missing (`unknown`)."""

    busy: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()

    def __add__(self, other: DeviceUse) -> DeviceUse:
        return DeviceUse(self.busy + other.busy, self.unknown + other.unknown)


@dataclass(frozen=True)
class Usage:
    """The host-wide users of block devices, indexed by device number; Unknown where unread."""

    mounts: Fact[tuple[Mount, ...]]
    openers: Fact[tuple[Opener, ...]]
    loops: Fact[tuple[LoopDevice, ...]]
    _mounts_by_dev: dict[DevNum, list[Mount]] = field(default_factory=dict, repr=False, compare=False)
    _openers_by_dev: dict[DevNum, list[Opener]] = field(default_factory=dict, repr=False, compare=False)
    _loops_by_dev: dict[DevNum, list[LoopDevice]] = field(default_factory=dict, repr=False, compare=False)
    _unresolved_loops: list[LoopDevice] = field(default_factory=list, repr=False, compare=False)
    _unknown_facts: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._unknown_facts.extend(f.reason for f in (self.mounts, self.openers, self.loops)
                                   if isinstance(f, Unknown))
        for mount in () if isinstance(self.mounts, Unknown) else self.mounts:
            self._mounts_by_dev.setdefault(mount.dev, []).append(mount)
        for opener in () if isinstance(self.openers, Unknown) else self.openers:
            self._openers_by_dev.setdefault(opener.dev, []).append(opener)
        # Indexed once: every device asks, and a node has thousands (sorted: stable reasons).
        for loop in () if isinstance(self.loops, Unknown) else sorted(self.loops, key=lambda x: x.name):
            if loop.backing is None:
                self._unresolved_loops.append(loop)
            else:
                self._loops_by_dev.setdefault(loop.backing, []).append(loop)

    @classmethod
    def of(cls, inventory: Inventory) -> Usage:
        """The usage facts of an inventory."""
        return cls(inventory.mounts, inventory.openers, inventory.loops)

    def of_device(self, name: str, dev: DevNum, holders: Optional[Collection[str]] = (),
                  open_count: Optional[int] = 0, expected_opens: int = 0) -> DeviceUse:
        """Who uses the device `name` (number `dev`, sysfs `holders`, dm `open_count`).

        `expected_opens` are opens that the caller accounts for (a stacked child removed first).
        """
        own = _kernel_use(name, holders, open_count, expected_opens)
        busy = list(own.busy)
        unknown = [f"{name}: {reason}" for reason in self._unknown_facts] + list(own.unknown)
        # Sorted: the same host read in another order gives the same reasons. Most devices have
        # no user at all: each index is asked once and only a hit builds reasons.
        mounts = self._mounts_by_dev.get(dev)
        if mounts:
            busy += sorted(f"{name} is mounted on {m.mount_point}{_in(m.namespace)}" for m in mounts)
        openers = self._openers_by_dev.get(dev)
        if openers:
            busy += [f"{name} is open by pid {o.pid} ({o.comm})"
                     for o in sorted(openers, key=lambda o: o.pid)]
        loops = self._loops_by_dev.get(dev)
        if loops:
            busy += [f"{name} backs loop device {loop.name} ({loop.backing_file})" for loop in loops]
        if self._unresolved_loops:
            unknown += [f"{name}: the backing file of {loop.name} ({loop.backing_file}) cannot be resolved"
                        for loop in self._unresolved_loops]
        if not busy and not unknown:
            return _UNUSED
        return DeviceUse(tuple(busy), tuple(unknown))

    def of_namespace(self, ns: NvmeNamespace, holders: Optional[Collection[str]]) -> DeviceUse:
        """Who uses the NVMe namespace `ns` (its `holders` as the caller counts them) or a partition.

        A namespace has no open count: what claims it shows in its O_EXCL open, what merely opens it
        only in /proc; each partition is a device of its own (mounted, held, claimed, opened).
        """
        use = self.of_device(ns.name, ns.dev, holders) + _claim_use(ns)
        for part in ns.partitions:
            use += self.of_device(part.name, part.dev, part.holders) + _claim_use(part)
        return use

    def of_dm(self, dm: DmDevice, removed_with_it: Collection[str] = (),
              names: Optional[Mapping[str, str]] = None) -> DeviceUse:
        """Who uses the dm device `dm`: any user, or its own suspended / deferred-removal state.

        `removed_with_it`: kernel names of holders removed before it (a stacked crypt child),
        each accounting for one open; `names` describes holders by kernel name.
        """
        holders, expected = _holders_left(dm, removed_with_it, names)
        return self.of_device(dm.name, dm.dev, holders, dm.open_count, expected) + _dm_state(dm)


def dm_kernel_use(dm: DmDevice) -> DeviceUse:
    """What the dm device's own kernel state says: open count, holders, suspended, deferred removal.

    Every user of a dm device holds it open, so this alone tells busy from idle; it names no user.
    """
    return _kernel_use(dm.name, dm.holders, dm.open_count, 0) + _dm_state(dm)


def _holders_left(dm: DmDevice, removed_with_it: Collection[str],
                  names: Optional[Mapping[str, str]]) -> tuple[Optional[list[str]], int]:
    """The holders that still count (described by `names`), and the opens the others account for."""
    if dm.holders is None:
        return None, 0
    left = [(names or {}).get(h, h) for h in dm.holders if h not in removed_with_it]
    return left, sum(1 for h in dm.holders if h in removed_with_it)


def _kernel_use(name: str, holders: Optional[Collection[str]], open_count: Optional[int],
                expected_opens: int) -> DeviceUse:
    """Busy or unknown by the holders/ in sysfs and the open count beyond `expected_opens`."""
    busy: list[str] = []
    unknown: list[str] = []
    if holders is None:
        unknown.append(f"{name}: its holders/ in sysfs could not be listed")
    elif holders:
        busy.append(f"{name} is held by {', '.join(holders)}")
    if open_count is None:
        unknown.append(f"{name}: its open count could not be read")
    elif open_count - expected_opens > 0:
        busy.append(f"{name} is open {open_count - expected_opens} time(s)")
    return DeviceUse(tuple(busy), tuple(unknown)) if busy or unknown else _UNUSED


def _claim_use(device: NvmeNamespace) -> DeviceUse:
    """Busy when something holds `device` exclusively, unknown when that could not be asked."""
    if isinstance(device.claimed, Unknown):
        return DeviceUse(unknown=(f"{device.name}: {device.claimed.reason}",))
    if device.claimed:
        return DeviceUse(busy=(f"{device.name} is claimed exclusively (mounted, swap, or held, "
                               "in some mount namespace)",))
    return _UNUSED


def _dm_state(dm: DmDevice) -> DeviceUse:
    state = []
    if dm.suspended:
        state.append(f"{dm.name} is suspended (an instance-manager may be reloading it)")
    if dm.deferred_remove:
        state.append(f"{dm.name} has a deferred removal pending")
    return DeviceUse(tuple(state))


_UNUSED = DeviceUse()


def _in(namespace: str) -> str:
    return f" in the {namespace}" if namespace else ""
