"""NVMe subsystems, their NVMe-oF controllers and namespace heads, from sysfs."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Mapping
from typing import NamedTuple, Optional

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.inventory.sysfs import Problems, read_holders, summary
from lhsweep.locks import LockUnavailable, longhorn_locks
from lhsweep.longhorn import volume_of_nqn
from lhsweep.model import (
    LONGHORN_NQN_PREFIX,
    DevNum,
    Fact,
    NvmeController,
    NvmeNamespace,
    NvmeSubsystem,
    Unknown,
)

SUBSYSTEMS = "/sys/class/nvme-subsystem"
CONTROLLERS = "/sys/class/nvme"
_CONTROLLER = re.compile(r"nvme\d+")
# A namespace block device: the multipath head (nvme<subsys>n<nsid>, below the subsystem) or,
# without native multipath, the controller's own disk (below the controller). The hidden
# per-path disk nvme<s>c<c>n<n> has no device number and does not match.
_NAMESPACE = re.compile(r"nvme\d+n\d+")
_PARTITION = re.compile(r"nvme\d+n\d+p\d+")


def read_subsystems(host: HostRoot, problems: Optional[Problems] = None,
                    devs: Optional[Mapping[str, DevNum]] = None,
                    claims: str = "", only_nqn: str = "") -> tuple[tuple[NvmeSubsystem, ...], str]:
    """Every NVMe subsystem in /sys/class/nvme-subsystem with its controllers and namespaces.

    `devs` (kernel name -> number, from a whole listing of /sys/dev/block) saves reading each
    namespace's `dev` and listing its directory for partitions. The namespaces of Longhorn
    subsystems are asked whether something claims them unless `claims` says why not (an O_EXCL
    open briefly claims the device: never while someone may be building on it). With `only_nqn`
    (the one subsystem whose volume lock the caller holds) only the subsystems of that NQN are
    read whole and probed, without taking the locks again; the others are left out once their
    NQN is read. The second value says why a subsystem could not be read whole and was left out
    ("" when none was): a namespace missing from the first may then still belong to an NVMe
    subsystem.
    """
    reader = _Reader(host, problems if problems is not None else Problems(), devs or {},
                     None if devs is None else _partitions_by_disk(devs), claims, only_nqn)
    subsystems, unread = [], []
    for name in host.listdir(SUBSYSTEMS):
        try:
            subsystem = reader.subsystem(name)
        except HostReadError as exc:
            reader.problems.add(str(exc))
            unread.append(str(exc))
            continue
        if subsystem is not None:
            subsystems.append(subsystem)
    return tuple(subsystems), summary(unread)


def _partitions_by_disk(devs: Mapping[str, DevNum]) -> dict[str, tuple[str, ...]]:
    """NVMe partition names (`nvme1n1p2`) grouped by their disk's name (`nvme1n1`)."""
    found: dict[str, list[str]] = {}
    for name in devs:
        disk = _disk_of(name)
        if disk:
            found.setdefault(disk, []).append(name)
    return {disk: tuple(names) for disk, names in found.items()}


def _disk_of(name: str) -> str:
    """The NVMe disk a partition name belongs to (`nvme1n1p2` -> `nvme1n1`); "" for others."""
    return name[:name.rindex("p")] if _PARTITION.fullmatch(name) else ""


class _Reader(NamedTuple):
    """Reads one subsystem at a time, recording problems."""

    host: HostRoot
    problems: Problems
    devs: Mapping[str, DevNum]
    # Partition names by namespace, from a whole listing of /sys/dev/block; None: list sysfs.
    partition_names: Optional[Mapping[str, tuple[str, ...]]]
    # Why claims are not asked ("" when they are).
    claims_off: str
    # The only NQN whose subsystems are read, its volume's locks held by the caller ("": every one).
    only_nqn: str

    def subsystem(self, name: str) -> Optional[NvmeSubsystem]:
        """The subsystem `name`; None when it vanished."""
        base = f"{SUBSYSTEMS}/{name}"
        nqn = self.host.read_attribute(f"{base}/subsysnqn")
        if nqn is None:
            if self.host.exists(base):
                raise HostReadError(f"{base}/subsysnqn: missing")
            return None
        if self.only_nqn and nqn.strip() != self.only_nqn:
            return None  # neither read further nor probed: its volume's locks are not held
        entries = self.host.listdir(base)
        controllers = tuple(c for c in (self.controller(e) for e in entries if _CONTROLLER.fullmatch(e))
                            if c is not None)
        # Only a Longhorn subsystem is ever disconnected: no other disk is probed (an admin's mkfs).
        with contextlib.ExitStack() as stack:
            probe = _Probe(self, nqn.strip(), stack)
            namespaces = self.namespaces(base, entries, probe)
            if not namespaces:  # no native multipath: the namespaces hang below the controllers
                for ctrl in controllers:
                    path = f"{CONTROLLERS}/{ctrl.name}"
                    namespaces += self.namespaces(path, self.host.listdir(path), probe)
        return NvmeSubsystem(name, nqn.strip(), controllers, tuple(sorted(namespaces, key=lambda n: n.name)))

    def why_not_probed(self, nqn: str) -> str:
        """Why the namespaces of the subsystem `nqn` are not asked whether they are claimed ("": asked)."""
        if not nqn.startswith(LONGHORN_NQN_PREFIX):
            return "not a Longhorn subsystem"
        return self.claims_off

    def controller(self, name: str) -> Optional[NvmeController]:
        """The controller `name`; None when it vanished.

        Raises HostReadError when it is there without a readable state: its subsystem is then
        not known whole (without native multipath its namespaces hang below it).
        """
        base = f"{CONTROLLERS}/{name}"
        # Only its state: the plan needs the controller's name; transport and address are
        # not read (two files a volume at 10,000 volumes).
        state = self.host.read_attribute(f"{base}/state")
        if state is None:
            if self.host.exists(base):
                raise HostReadError(f"{base}/state: missing")
            return None
        return NvmeController(name, state.strip())

    def namespaces(self, directory: str, entries: list[str], probe: _Probe) -> list[NvmeNamespace]:
        """The namespace block devices among `entries` of `directory` (claims asked unless `probe`
        says why not)."""
        found = []
        for entry in entries:
            if _NAMESPACE.fullmatch(entry):
                ns = self.namespace(f"{directory}/{entry}", entry, probe)
                if ns is not None:
                    found.append(ns)
        return found

    def namespace(self, path: str, name: str, probe: _Probe) -> Optional[NvmeNamespace]:
        """The namespace at `path`; None when it is gone.

        Raises HostReadError when it is there without a readable device number: the subsystem
        is then not known whole (its namespaces' users decide whether it may be disconnected).
        """
        dev = self.devs.get(name) or _number(self.host, f"{path}/dev")
        if dev is None:
            return None
        holders = read_holders(self.host, f"{path}/holders")
        # A holder of the whole disk claims it, and so makes every partition's claim fail too.
        held = holders != ()
        return NvmeNamespace(name, dev, holders, self.claim(name, dev, held, probe),
                             self.partitions(path, name, held, probe))

    def claim(self, name: str, dev: DevNum, held: bool, probe: _Probe) -> Optional[Fact[bool]]:
        """Whether the block device `name` is claimed (its node in /dev opened O_EXCL); None when
        `held` (its holders claim it), Unknown when `probe` says why it is not asked."""
        if held:
            return None
        why = probe.why_not()
        if why:
            return Unknown(f"/dev/{name}: not asked whether it is claimed ({why})")
        return exclusive_claim(self.host, f"/dev/{name}", dev)

    def partitions(self, path: str, name: str, held: bool, probe: _Probe) -> tuple[NvmeNamespace, ...]:
        """The partitions of the namespace `name` (sysfs `<path>/<name>p<N>`, each with a `dev`),
        each with its claim unless the whole disk is `held`."""
        if self.partition_names is not None:
            names = self.partition_names.get(name, ())
        else:
            names = tuple(e for e in self.host.listdir(path) if _disk_of(e) == name)
        found = []
        for part in sorted(names):
            dev = self.devs.get(part) or _number(self.host, f"{path}/{part}/dev")
            if dev is not None:
                holders = read_holders(self.host, f"{path}/{part}/holders")
                claimed = self.claim(part, dev, held or holders != (), probe)
                found.append(NvmeNamespace(part, dev, holders, claimed))
        return tuple(found)


class _Probe:
    """Whether one subsystem's namespaces may be probed for claims, its volume's Longhorn locks
    taken at the first probe and held until the subsystem is read (rule
    respect-live-instance-manager).

    A probe claims the device for an instant: under the locks, no go-spdk-helper operation on the
    volume runs meanwhile. A subsystem whose namespaces all have holders needs no probe and takes
    no lock. With `only_nqn` the caller already holds them.
    """

    def __init__(self, reader: _Reader, nqn: str, stack: contextlib.ExitStack) -> None:
        self.reader, self.nqn, self.stack = reader, nqn, stack
        self.why: Optional[str] = None

    def why_not(self) -> str:
        """Why the namespaces are not probed ("": they are, the locks now held)."""
        if self.why is None:
            self.why = self.reader.why_not_probed(self.nqn)
            if not self.why and not self.reader.only_nqn:
                try:
                    self.stack.enter_context(longhorn_locks(self.reader.host, volume_of_nqn(self.nqn)))
                except LockUnavailable as exc:
                    self.why = str(exc)
        return self.why


def exclusive_claim(host: HostRoot, device: str, dev: DevNum) -> Fact[bool]:
    """Whether something holds the block node `device` (number `dev`) exclusively: its O_EXCL
    open fails EBUSY.

    Read-only and without waiting: an open does no I/O, and no udev change event follows. A
    block node of another number (a stale /dev) answers for another device: unknown.
    """
    try:
        fd = host.open(device, os.O_RDONLY | os.O_EXCL | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return True
        return Unknown(f"{device}: cannot open it to see whether it is claimed: {exc.strerror}")
    except HostReadError as exc:
        return Unknown(str(exc))
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if stat.S_ISBLK(st.st_mode) and DevNum(os.major(st.st_rdev), os.minor(st.st_rdev)) != dev:
        return Unknown(f"{device}: a block node of {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}, "
                       f"not of {dev}: it cannot tell whether {dev} is claimed")
    return False


def _number(host: HostRoot, path: str) -> Optional[DevNum]:
    """The device number in the sysfs file `path`; None when it is gone; raises when garbage."""
    text = host.read_attribute(path)
    if text is None:
        if host.exists(os.path.dirname(path)):
            raise HostReadError(f"{path}: missing")
        return None
    try:
        return DevNum.parse(text)
    except ValueError:
        raise HostReadError(f"{path}: expected major:minor, got {text.strip()[:40]!r}") from None
