"""Typed records passed between the stages: inventory, runtime view, plan and action results."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple, Optional, TypeVar, Union

LONGHORN_NQN_PREFIX = "nqn.2023-01.io.longhorn.spdk:"
_T = TypeVar("_T")


# A dataclass, not a named tuple: a tuple is iterable and truthy, so a Fact iterated or tested
# without the isinstance check would read an Unknown as a list of facts (fail open).
@dataclass(frozen=True)
class Unknown:
    """A host fact that could not be read, and why: never read as "nothing there"."""

    reason: str


# A fact of the inventory: the value read, or Unknown with the reason it could not be.
Fact = Union[_T, Unknown]


class DevNum(NamedTuple):
    """A block device number (major:minor).

    A named tuple rather than a dataclass: it keys most of the inventory's and the plan's
    lookups, and a tuple's hash and equality run in C (a tenth of the plan's time at 10,000
    volumes went to the dataclass's generated __hash__ and __eq__).
    """

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}:{self.minor}"

    @classmethod
    def parse(cls, text: str) -> DevNum:
        """Parse 'M:m' as found in sysfs 'dev' files and mountinfo; raises ValueError."""
        major, _, minor = text.strip().partition(":")
        return cls(int(major), int(minor))


# ---------------------------------------------------------------- inventory

# The records made per host object (about twelve a volume) are named tuples, immutable like a
# frozen dataclass but built in C: a frozen dataclass's __init__ sets each field through
# object.__setattr__ (at 10,000 volumes 3-5% of the inventory's CPU time).


class DmTarget(NamedTuple):
    """One segment of a dm table; only what ownership needs, never the raw parameters.

    `backing` is the device number named by the target's parameters for linear and
    crypt targets (the 4th crypt field; the key is never kept), None otherwise; `offset` is
    the sector of the backing a linear target starts at, None when not linear or not a number.
    """

    start: int
    length: int
    target_type: str
    backing: Optional[DevNum] = None
    offset: Optional[int] = None


def table_fingerprint(targets: Optional[tuple[DmTarget, ...]]) -> str:
    """A short text of a table's shape, to notice a reload between plan and action."""
    if targets is None:
        return "?"
    return ";".join(f"{t.target_type} {t.start}+{t.length} {t.backing or '-'}@{t.offset}" for t in targets)


class DmDevice(NamedTuple):
    """A device-mapper device as sysfs and the dm ioctl show it.

    `targets`/`open_count` are None when the dm control interface could not be read:
    the plan then treats the device as unknown.
    """

    name: str
    dev: DevNum
    uuid: str
    suspended: bool
    targets: Optional[tuple[DmTarget, ...]]
    open_count: Optional[int]
    deferred_remove: bool
    # None when holders/ could not be listed.
    holders: Optional[tuple[str, ...]]
    # For each slaves/ link whose target no longer exists: the link text (never followed).
    dangling_slaves: tuple[str, ...] = ()


class NodeType(str, enum.Enum):
    """What a /dev/longhorn entry is (from lstat, never following links)."""

    BLOCK = "block"
    CHAR = "char"
    SYMLINK = "symlink"
    REGULAR = "regular"
    DIRECTORY = "directory"
    OTHER = "other"


class LonghornNode(NamedTuple):
    """An entry of /dev/longhorn: name, type, device number (block nodes), inode, ctime (ns)."""

    name: str
    node_type: NodeType
    rdev: Optional[DevNum]
    inode: int
    ctime_ns: int


class NvmeNamespace(NamedTuple):
    """A namespace block device (head) of an NVMe subsystem, or one of its partitions."""

    name: str
    dev: DevNum
    # None when holders/ could not be listed.
    holders: Optional[tuple[str, ...]]
    # Whether something holds it exclusively, by an O_EXCL open: a mount in any mount namespace
    # (any file system, btrfs's anonymous numbers too), swap, a storage target, a journal...
    # None when not asked: it has holders, which hold it so.
    claimed: Optional[Fact[bool]] = None
    # The partitions the kernel made from its partition table, each with its own users.
    partitions: tuple[NvmeNamespace, ...] = ()


class NvmeController(NamedTuple):
    """An NVMe-oF controller (/sys/class/nvme/nvmeN) and its state (live, connecting, ...)."""

    name: str
    state: str


class NvmeSubsystem(NamedTuple):
    """An NVMe subsystem with its NQN, controllers and namespace heads."""

    name: str
    nqn: str
    controllers: tuple[NvmeController, ...]
    namespaces: tuple[NvmeNamespace, ...]

    @property
    def is_longhorn(self) -> bool:
        """True when the NQN carries Longhorn V2's prefix."""
        return self.nqn.startswith(LONGHORN_NQN_PREFIX)


class BlockDevice(NamedTuple):
    """Any block device known to sysfs (/sys/dev/block/M:m): its kernel name."""

    name: str
    dev: DevNum


class Mount(NamedTuple):
    """One mountinfo line, reduced to what busy detection needs."""

    dev: DevNum
    mount_point: str
    source: str
    # "" for PID 1's mount namespace, else which one ("mount namespace of pid 42 (sleep)").
    namespace: str = ""


class Opener(NamedTuple):
    """A process holding an fd open on a block device (from /proc/<pid>/fd)."""

    dev: DevNum
    pid: int
    comm: str


class LoopDevice(NamedTuple):
    """A bound loop device and the block device backing it.

    `backing` is None when the backing file cannot be resolved (deleted, or gone from the host's
    view): it may have been any block node. DevNum(0, 0) stands for a regular file.
    """

    name: str
    backing_file: str
    backing: Optional[DevNum]


class Inventory(NamedTuple):
    """Everything read from one host at one moment; each fact is known or Unknown(reason)."""

    dm_devices: tuple[DmDevice, ...]
    nodes: Fact[tuple[LonghornNode, ...]]
    subsystems: tuple[NvmeSubsystem, ...]
    block_devices: tuple[BlockDevice, ...]
    ublk_devices: tuple[BlockDevice, ...]
    # Every mount of every mount namespace.
    mounts: Fact[tuple[Mount, ...]]
    # Why a part could not be read (for example "dm control: permission denied"); for the operator.
    problems: tuple[str, ...] = ()
    openers: Fact[tuple[Opener, ...]] = ()
    loops: Fact[tuple[LoopDevice, ...]] = ()
    # Volumes with an engine-frontend record (Longhorn v1.12+ re-adopts their devices).
    frontend_records: Fact[frozenset[str]] = frozenset()
    # Why /sys/dev/block, or the NVMe subsystems, were not read whole ("" when they were): a device
    # missing from block_devices may still exist, a namespace missing from subsystems may be NVMe-oF.
    blocks_unread: str = ""
    subsystems_unread: str = ""


# ---------------------------------------------------------------- runtime


class RuntimeState(str, enum.Enum):
    """Whether the container runtime answered sensibly."""

    KNOWN = "known"
    UNKNOWN = "unknown"


# An instance-manager container in one of these states may be creating or using devices.
# "unknown" counts: a state the runtime lost is not proof of an end.
ALIVE_CONTAINER_STATES = ("created", "running", "unknown")


class InstanceManager(NamedTuple):
    """A V2 instance-manager pod sandbox and its instance-manager container, as CRI reports them."""

    pod_name: str
    pod_uid: str
    namespace: str
    node: str
    sandbox_id: str
    sandbox_state: str  # "ready" | "notready"
    container_id: Optional[str]
    container_state: Optional[str]  # "created" | "running" | "exited" | "unknown"
    # Creation time of its oldest alive container (the cautious age cut-off), else of the
    # container named, else of the sandbox.
    created_at_ns: int

    @property
    def alive(self) -> bool:
        """True while it may own devices: its container is in ALIVE_CONTAINER_STATES.

        The sandbox's state does not matter (a NOTREADY sandbox's engine may still serve I/O);
        with no container listed, a ready sandbox counts (kubelet may be creating it).
        """
        if self.container_state is None:
            return self.sandbox_state == "ready"
        return self.container_state in ALIVE_CONTAINER_STATES


class RuntimeView(NamedTuple):
    """What CRI said about V2 instance-managers on this node, or why it could not say.

    `endpoint` is the address asked; `endpoint_reason` says why that one is kubelet's runtime.
    """

    state: RuntimeState
    reason: str
    endpoint: str = ""
    runtime_name: str = ""
    runtime_version: str = ""
    instance_managers: tuple[InstanceManager, ...] = ()
    endpoint_reason: str = ""

    @property
    def live_instance_managers(self) -> tuple[InstanceManager, ...]:
        """The instance-managers that are alive (see InstanceManager.alive)."""
        return tuple(im for im in self.instance_managers if im.alive)


# ---------------------------------------------------------------- plan


class Kind(str, enum.Enum):
    """The three kinds of host object lhsweep reasons about."""

    DM = "dm"
    NODE = "node"
    NVME = "nvme"


class Verdict(str, enum.Enum):
    """The plan's decision for one entry."""

    LIVE = "live"
    STALE = "stale"
    BUSY = "busy"
    FOREIGN = "foreign"
    UNKNOWN = "unknown"


class Identity(NamedTuple):
    """What must still be true of an object right before it is removed (rule recheck-before-action).

    A named tuple rather than a dataclass: the plan makes one for every entry (a frozen
    dataclass's __init__ sets each field through object.__setattr__).
    """

    name: str
    dev: Optional[DevNum] = None
    inode: Optional[int] = None
    nqn: Optional[str] = None
    # dm: the table's shape (types, extents, backing numbers; never parameters) as planned.
    fingerprint: str = ""
    # node: what its device number must be right before the unlink, in `device_at`'s words
    # ("" when no device may have it: its dm device went first, or it had none).
    points_at: str = ""
    # NVMe subsystem: the controllers planned; one connected since means a new user.
    controllers: tuple[str, ...] = ()
    # dm (each device of a volume's group): the backing the plan found gone. Back again means a
    # new connection took its number, and the table may be in use again (re-adopted).
    backing_gone: Optional[DevNum] = None
    # dm `-encrypted` child: its parent as planned. A parent re-created or reloaded since (onto a
    # new connection) may be in use again, and the child with it.
    parent: Optional[Identity] = None


def device_at(kernel_name: Optional[str], dm_name: Optional[str]) -> str:
    """What a device number is now, in words the plan and the re-check share: "" when no device has it.

    A dm device is named with its dm name too: dm hands a freed minor, kernel name included, to
    the next device, so `dm-3` alone cannot tell a re-created device from the one planned.
    """
    if kernel_name is None:
        return ""
    return kernel_name if dm_name is None else f"{kernel_name} (dm {dm_name})"


class Entry(NamedTuple):
    """One host object with the plan's verdict and the reason for it (a named tuple, like Identity)."""

    kind: Kind
    name: str
    verdict: Verdict
    reason: str
    identity: Identity
    volume: str = ""
    # Removal order inside a sweep (lower first); meaningful only for stale entries.
    order: int = 0
    # Names (kind, name) that must be removed successfully before this one is attempted.
    after: tuple[tuple[Kind, str], ...] = ()
    # For busy entries: what uses it ("pvc-1 is mounted on /var/lib/...", "held by dm-3 (...)").
    holders: tuple[str, ...] = ()
    # For an entry kept only for its youth: when it leaves the grace period (epoch ns).
    grace_ends_ns: Optional[int] = None


class Plan(NamedTuple):
    """Every entry with its verdict; `removals` are the stale ones in the order to remove them."""

    entries: tuple[Entry, ...]

    @property
    def next_grace_end_ns(self) -> Optional[int]:
        """When the first entry kept only for its youth leaves the grace period (epoch ns), if any:
        a daemon sweeps again then rather than at its next slow resync."""
        return min((e.grace_ends_ns for e in self.entries if e.grace_ends_ns is not None), default=None)

    @property
    def removals(self) -> tuple[Entry, ...]:
        """Stale entries, in removal order."""
        stale = [e for e in self.entries if e.verdict is Verdict.STALE]
        return tuple(sorted(stale, key=lambda e: (e.order, e.kind.value, e.name)))


# ---------------------------------------------------------------- actions


class ActionResult(str, enum.Enum):
    """How one planned removal ended."""

    REMOVED = "removed"
    SKIPPED = "skipped"
    FAILED = "failed"


class ActionOutcome(NamedTuple):
    """The end of one planned removal: result and a human detail."""

    kind: Kind
    name: str
    result: ActionResult
    detail: str
    volume: str = ""
    duration_s: float = 0.0
    stuck: bool = False


class SweepReport(NamedTuple):
    """One whole sweep: runtime view, plan and what the actions did."""

    runtime: RuntimeView
    plan: Plan
    outcomes: tuple[ActionOutcome, ...] = ()
    dry_run: bool = False
    started_at: float = 0.0
    duration_s: float = 0.0
    problems: tuple[str, ...] = ()
