"""In-memory Inventory and RuntimeView builders for testing the pure plan without a host tree."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from lhsweep.model import (
    LONGHORN_NQN_PREFIX,
    BlockDevice,
    DevNum,
    DmDevice,
    DmTarget,
    InstanceManager,
    Inventory,
    LonghornNode,
    LoopDevice,
    Mount,
    NodeType,
    NvmeController,
    NvmeNamespace,
    NvmeSubsystem,
    Opener,
    RuntimeState,
    RuntimeView,
    Unknown,
)

DM_MAJOR, NVME_MAJOR, SD_MAJOR = 253, 259, 8
SECOND = 1_000_000_000


@dataclass
class Host:
    """A mutable host description that freezes into an Inventory."""

    dm: list[DmDevice] = field(default_factory=list)
    nodes: list[LonghornNode] = field(default_factory=list)
    subsystems: list[NvmeSubsystem] = field(default_factory=list)
    blocks: list[BlockDevice] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    openers: list[Opener] = field(default_factory=list)
    loops: list[LoopDevice] = field(default_factory=list)
    # Facts that could not be read: "nodes", "mounts", "openers", "loops" -> reason.
    unknown: dict[str, str] = field(default_factory=dict)
    # Why /sys/dev/block and the NVMe subsystems were not read whole ("" when they were).
    blocks_unread: str = ""
    subsystems_unread: str = ""
    next_dm: int = 0
    next_ns: int = 1
    next_inode: int = 100

    def inventory(self) -> Inventory:
        """The frozen inventory; the facts named in `unknown` are Unknown."""
        def fact(name: str, value: tuple) -> Any:
            return Unknown(self.unknown[name]) if name in self.unknown else value
        return Inventory(tuple(self.dm), fact("nodes", tuple(self.nodes)), tuple(self.subsystems),
                         tuple(self.blocks), (), fact("mounts", tuple(self.mounts)),
                         openers=fact("openers", tuple(self.openers)), loops=fact("loops", tuple(self.loops)),
                         blocks_unread=self.blocks_unread, subsystems_unread=self.subsystems_unread)

    def hide_block(self, block: BlockDevice) -> None:
        """Its /sys/dev/block entry cannot be read: left out of the blocks, and a dm device with it."""
        self.blocks.remove(block)
        self.dm = [d for d in self.dm if d.dev != block.dev]
        self.blocks_unread = f"/sys/dev/block/{block.dev}: not a link"

    def hide_subsystem(self, subsystem: NvmeSubsystem) -> None:
        """The subsystem cannot be read whole: left out (its namespaces' block devices stay)."""
        self.subsystems.remove(subsystem)
        self.subsystems_unread = f"/sys/class/nvme-subsystem/{subsystem.name}/subsysnqn: missing"

    def namespace(self, nqn: str, present: bool = True) -> tuple[DevNum, str]:
        """An NVMe subsystem with one controller and namespace; returns the namespace's dev and name."""
        index = self.next_ns
        self.next_ns += 1
        dev, name = DevNum(NVME_MAJOR, index), f"nvme{index}n1"
        if present:
            ns = NvmeNamespace(name, dev, (), claimed=False)  # as read: no holders, so asked
            ctrl = NvmeController(f"nvme{index}", "live")
            self.subsystems.append(NvmeSubsystem(f"nvme-subsys{index}", nqn, (ctrl,), (ns,)))
            self.blocks.append(BlockDevice(name, dev))
        return dev, name

    def add_dm(self, name: str, targets: tuple[DmTarget, ...], *, uuid: str = "", open_count: int = 0,
               suspended: bool = False, holders: tuple[str, ...] = ()) -> DmDevice:
        """A dm device (registered as a block device dm-N)."""
        dev = DevNum(DM_MAJOR, self.next_dm)
        self.next_dm += 1
        dm = DmDevice(name, dev, uuid, suspended, targets, open_count, False, holders)
        self.dm.append(dm)
        self.blocks.append(BlockDevice(f"dm-{dev.minor}", dev))
        return dm

    def add_node(self, name: str, rdev: Optional[DevNum], ctime_ns: int,
                 node_type: NodeType = NodeType.BLOCK) -> LonghornNode:
        """An entry in /dev/longhorn."""
        self.next_inode += 1
        node = LonghornNode(name, node_type, rdev if node_type is NodeType.BLOCK else None,
                            self.next_inode, ctime_ns)
        self.nodes.append(node)
        return node

    def hold(self, dm: DmDevice, holder: DmDevice) -> None:
        """Record `holder` in dm's holders/ and count its open."""
        held = DmDevice(dm.name, dm.dev, dm.uuid, dm.suspended, dm.targets,
                        (dm.open_count or 0) + 1, dm.deferred_remove,
                        (*(dm.holders or ()), f"dm-{holder.dev.minor}"), dm.dangling_slaves)
        self.dm[self.dm.index(dm)] = held

    def hold_namespace(self, ns_dev: DevNum, holder: DmDevice) -> None:
        """Record a dm device in a namespace's holders/."""
        for i, sub in enumerate(self.subsystems):
            spaces = tuple(
                NvmeNamespace(n.name, n.dev, (*(n.holders or ()), f"dm-{holder.dev.minor}"), None,
                              n.partitions)
                if n.dev == ns_dev else n
                for n in sub.namespaces
            )
            self.subsystems[i] = NvmeSubsystem(sub.name, sub.nqn, sub.controllers, spaces)

    def add_volume(self, name: str, *, ctime_ns: int, backing_gone: bool = False, node: bool = True,
                   open_count: int = 0, mounted: bool = False, encrypted: bool = False,
                   nqn: Optional[str] = None) -> DmDevice:
        """A Longhorn V2 volume as go-spdk-helper leaves it: NVMe namespace, linear dm, node."""
        ns_dev, _ = self.namespace(nqn or f"{LONGHORN_NQN_PREFIX}volume-{name}", present=not backing_gone)
        dm = self.add_dm(name, (DmTarget(0, 2048, "linear", ns_dev, 0),), open_count=open_count)
        if not backing_gone:
            self.hold_namespace(ns_dev, dm)
        top = dm
        if encrypted:
            top = self.add_dm(f"{name}-encrypted", (DmTarget(0, 2016, "crypt", dm.dev),),
                              uuid=f"CRYPT-LUKS2-0123-{name}-encrypted")
            self.hold(dm, top)
        if node:
            self.add_node(name, top.dev, ctime_ns)
        if mounted:
            self.mounts.append(Mount(top.dev, f"/var/lib/kubelet/pods/x/volumes/{name}", "/dev/longhorn"))
        return dm

    def add_v1_encrypted(self, name: str, ctime_ns: int) -> DmDevice:
        """A V1 encrypted volume: crypt device named exactly <vol> over an iSCSI disk, and its node."""
        sd = DevNum(SD_MAJOR, 16 * len(self.blocks))
        self.blocks.append(BlockDevice(f"sd{chr(97 + len(self.blocks) % 26)}", sd))
        dm = self.add_dm(name, (DmTarget(0, 2016, "crypt", sd),), uuid=f"CRYPT-LUKS2-abcd-{name}")
        self.add_node(name, dm.dev, ctime_ns)
        return dm


def runtime_unknown(reason: str = "no CRI socket answered") -> RuntimeView:
    """A runtime that could not be asked."""
    return RuntimeView(RuntimeState.UNKNOWN, reason)


def runtime_with(*managers: InstanceManager) -> RuntimeView:
    """A runtime that answered with these instance-managers."""
    return RuntimeView(RuntimeState.KNOWN, "ok", "unix:///run/containerd/containerd.sock",
                       "containerd", "1.6", managers)


def instance_manager(created_at_ns: int, *, running: bool = True, suffix: str = "0") -> InstanceManager:
    """A V2 instance-manager pod with its container."""
    return InstanceManager(
        pod_name=f"instance-manager-{suffix * 32}"[:49], pod_uid=f"uid-{suffix}", namespace="longhorn-system",
        node="node-1", sandbox_id=f"sandbox-{suffix}", sandbox_state="ready",
        container_id=f"container-{suffix}", container_state="running" if running else "exited",
        created_at_ns=created_at_ns,
    )
