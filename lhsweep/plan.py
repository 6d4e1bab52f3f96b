"""The plan: a pure function giving every dm device, /dev/longhorn entry and NVMe subsystem a verdict."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

from lhsweep.config import Config
from lhsweep.longhorn import ENCRYPTED_SUFFIX, fits_name, volume_of_nqn
from lhsweep.model import (
    DevNum,
    DmDevice,
    Entry,
    Identity,
    Inventory,
    Kind,
    LonghornNode,
    NodeType,
    NvmeNamespace,
    NvmeSubsystem,
    Plan,
    RuntimeState,
    RuntimeView,
    Unknown,
    Verdict,
    device_at,
    table_fingerprint,
)
from lhsweep.usage import DeviceUse, Usage

# Removal order inside a sweep: crypt children, then dm devices, then nodes, then NVMe controllers.
ORDER_DM_CHILD, ORDER_DM, ORDER_NODE, ORDER_NVME = 0, 1, 2, 3
_SUBSYS_IN_LINK = re.compile(r"/(nvme-subsys\d+)/")


class _Index(NamedTuple):
    """Lookups over one inventory."""

    block_by_dev: dict[DevNum, str]
    dm_by_dev: dict[DevNum, DmDevice]
    dm_by_name: dict[str, DmDevice]
    dm_by_kernel_name: dict[str, DmDevice]
    namespaces: dict[DevNum, tuple[NvmeNamespace, NvmeSubsystem]]
    subsystems: dict[str, NvmeSubsystem]
    ublk: frozenset[DevNum]
    usage: Usage
    nodes: dict[str, LonghornNode]
    # Why /dev/longhorn could not be read ("" when it was).
    nodes_unknown: str
    # Volumes with an engine-frontend record, and why the records could not be read ("" when they were).
    frontend_records: frozenset[str]
    records_unknown: str
    # Why /sys/dev/block and the NVMe subsystems were not read whole ("" when they were).
    blocks_unread: str
    subsystems_unread: str

    @classmethod
    def build(cls, inv: Inventory) -> _Index:
        """Index `inv` by device number and name."""
        block_by_dev = {b.dev: b.name for b in inv.block_devices}
        nodes = inv.nodes if not isinstance(inv.nodes, Unknown) else ()
        records = inv.frontend_records
        return cls(
            block_by_dev=block_by_dev,
            dm_by_dev={d.dev: d for d in inv.dm_devices},
            dm_by_name={d.name: d for d in inv.dm_devices},
            dm_by_kernel_name={block_by_dev[d.dev]: d for d in inv.dm_devices if d.dev in block_by_dev},
            namespaces={ns.dev: (ns, s) for s in inv.subsystems for ns in s.namespaces},
            subsystems={s.name: s for s in inv.subsystems},
            ublk=frozenset(u.dev for u in inv.ublk_devices),
            usage=Usage.of(inv),
            nodes={n.name: n for n in nodes},
            nodes_unknown=inv.nodes.reason if isinstance(inv.nodes, Unknown) else "",
            frontend_records=records if not isinstance(records, Unknown) else frozenset(),
            records_unknown=records.reason if isinstance(records, Unknown) else "",
            blocks_unread=inv.blocks_unread,
            subsystems_unread=inv.subsystems_unread,
        )

    def present(self, dev: DevNum) -> bool:
        """True when the block device `dev` was read (in /sys/dev/block, or as an NVMe namespace)."""
        return dev in self.block_by_dev or dev in self.namespaces


class _Context(NamedTuple):
    """Everything one planning run looks at."""

    idx: _Index
    runtime: RuntimeView
    config: Config
    now_ns: int
    # Creation time of the oldest live instance-manager container, None when none runs.
    live_since_ns: Optional[int]
    # The live instance-manager pod names, for reasons.
    im_names: str
    grace_ns: int

    @classmethod
    def build(cls, inv: Inventory, runtime: RuntimeView, config: Config, now: float) -> _Context:
        """Index the inventory and work out once what every entry's verdict looks at."""
        live = runtime.live_instance_managers
        return cls(_Index.build(inv), runtime, config, int(now * 1e9),
                   min(im.created_at_ns for im in live) if live else None,
                   ", ".join(sorted(im.pod_name for im in live)),
                   int(config.sweep_grace_period * 1e9))


class _Verdict(NamedTuple):
    """A verdict with its reason, what makes it busy, and when only youth keeps it (epoch ns)."""

    verdict: Verdict
    reason: str
    holders: tuple[str, ...] = ()
    grace_ends_ns: Optional[int] = None


@dataclass
class _Draft:
    """An entry under construction."""

    kind: Kind
    name: str
    verdict: Verdict
    reason: str
    identity: Identity
    volume: str = ""
    order: int = 0
    after: list[tuple[Kind, str]] = field(default_factory=list)
    holders: tuple[str, ...] = ()
    grace_ends_ns: Optional[int] = None

    def decided(self, verdict: _Verdict, what: str) -> None:
        """Take `verdict`, its reason followed by `what` the entry is."""
        self.verdict, self.reason = verdict.verdict, f"{verdict.reason}{what}"
        self.holders, self.grace_ends_ns = verdict.holders, verdict.grace_ends_ns

    def freeze(self) -> Entry:
        """The finished, immutable entry."""
        return Entry(self.kind, self.name, self.verdict, self.reason, self.identity,
                     self.volume, self.order, tuple(self.after), self.holders, self.grace_ends_ns)


def make_plan(inventory: Inventory, runtime: RuntimeView, config: Config, now: float) -> Plan:
    """Give every host object a verdict and a reason; only stale entries are ever removed."""
    ctx = _Context.build(inventory, runtime, config, now)
    dm = _plan_dm_devices(ctx)
    nodes = {n.name: _plan_node(ctx, n, dm) for n in ctx.idx.nodes.values()}
    nodes_by_dev: dict[DevNum, list[_Draft]] = {}
    for node in nodes.values():
        if node.identity.dev is not None:
            nodes_by_dev.setdefault(node.identity.dev, []).append(node)
    nvme = [_plan_subsystem(ctx, s, dm, nodes_by_dev) for s in inventory.subsystems if s.controllers]
    drafts = [*dm.values(), *nodes.values(), *nvme]
    # Kind is a str enum: a member sorts as its value ("dm" < "node" < "nvme"), without the
    # enum's .value lookup per draft.
    entries = tuple(d.freeze() for d in sorted(drafts, key=lambda d: (d.kind, d.name)))
    return Plan(entries)


# ---------------------------------------------------------------- dm devices


def _plan_dm_devices(ctx: _Context) -> dict[str, _Draft]:
    drafts: dict[str, _Draft] = {}
    for dm in ctx.idx.dm_by_name.values():
        if dm.name not in drafts:
            drafts.update(_plan_dm_group(ctx, dm))
    return drafts


def _identity(dm: DmDevice, backing_gone: Optional[DevNum] = None,
              parent: Optional[Identity] = None) -> Identity:
    return Identity(name=dm.name, dev=dm.dev, fingerprint=table_fingerprint(dm.targets),
                    backing_gone=backing_gone, parent=parent)


def _plan_dm_group(ctx: _Context, dm: DmDevice) -> dict[str, _Draft]:
    """Plan one dm device, and with a Longhorn parent its `-encrypted` child as one group."""
    parent = _crypt_parent(ctx, dm)
    if parent is not None and not ctx.config.excluded(dm.name) and _owner_reason(ctx, parent)[0]:
        return _plan_dm_group(ctx, parent)
    owned, why = _owner_reason(ctx, dm)
    if not owned:
        unowned = Verdict.FOREIGN if owned is False else Verdict.UNKNOWN
        return {dm.name: _Draft(Kind.DM, dm.name, unowned, why, _identity(dm))}
    child = _encrypted_child(ctx, dm)
    members = [dm] if child is None else [child, dm]
    backing = dm.targets[0].backing if dm.targets else None
    present = backing is not None and ctx.idx.present(backing)
    verdict = _dm_verdict(ctx, dm, child, present)
    gone = None if present else backing
    group: dict[str, _Draft] = {}
    for member in members:
        is_child = member is child
        identity = _identity(member, gone, _identity(dm, gone) if is_child else None)
        draft = _Draft(Kind.DM, member.name, Verdict.UNKNOWN, "", identity, dm.name,
                       ORDER_DM_CHILD if is_child else ORDER_DM)
        draft.decided(verdict, f" ({why})")
        if child is not None and not is_child:
            draft.after.append((Kind.DM, child.name))
        group[member.name] = draft
    return group


def _crypt_parent(ctx: _Context, dm: DmDevice) -> Optional[DmDevice]:
    """For `<vol>-encrypted`, a crypt target on dm `<vol>`: that parent device."""
    if not dm.name.endswith(ENCRYPTED_SUFFIX) or not _single(dm, "crypt"):
        return None
    assert dm.targets is not None
    parent = ctx.idx.dm_by_dev.get(dm.targets[0].backing) if dm.targets[0].backing else None
    if parent is None or parent.name + ENCRYPTED_SUFFIX != dm.name:
        return None
    return parent


def _encrypted_child(ctx: _Context, dm: DmDevice) -> Optional[DmDevice]:
    """The `<name>-encrypted` crypt device on `dm`; an excluded one is its own (and holds `dm`)."""
    child = ctx.idx.dm_by_name.get(dm.name + ENCRYPTED_SUFFIX)
    if child is not None and _crypt_parent(ctx, child) is dm and not ctx.config.excluded(child.name):
        return child
    return None


def _single(dm: DmDevice, target_type: str) -> bool:
    """True when the table is exactly one segment of `target_type` starting at sector 0."""
    return (
        dm.targets is not None
        and len(dm.targets) == 1
        and dm.targets[0].target_type == target_type
        and dm.targets[0].start == 0
    )


def _owner_reason(ctx: _Context, dm: DmDevice) -> tuple[Optional[bool], str]:
    """Rule prove-ownership: is a dm device a Longhorn V2 frontend; (owned, why), None: cannot tell."""
    pattern = ctx.config.excluded(dm.name)
    if pattern:
        return False, f"excluded by sweep.exclude pattern {pattern!r}"
    if dm.targets is None:
        return None, "dm table and open count could not be read; ownership unproven"
    if not _single(dm, "linear"):
        kinds = ",".join(sorted({t.target_type for t in dm.targets})) or "empty"
        return False, f"table is {len(dm.targets)} segment(s) of {kinds}, not one linear segment"
    if dm.uuid:
        return False, f"has a dm uuid ({dm.uuid[:24]}), Longhorn's devices have none"
    backing = dm.targets[0].backing
    if backing is None:
        return False, "linear target names no backing device"
    if dm.targets[0].offset != 0:
        return False, "linear target does not map its backing from sector 0"
    if not fits_name(dm.name):
        return False, "the name is not Longhorn-shaped"
    return _backing_reason(ctx, dm, backing)


def _backing_reason(ctx: _Context, dm: DmDevice, backing: DevNum) -> tuple[Optional[bool], str]:
    ns = ctx.idx.namespaces.get(backing)
    if ns is not None:
        namespace, subsystem = ns
        if subsystem.is_longhorn:
            return _named_for(dm, subsystem, f"linear over {namespace.name} of Longhorn subsystem")
        return False, f"linear over {namespace.name} of non-Longhorn subsystem {subsystem.nqn}"
    if backing in ctx.idx.ublk:
        return _ublk_reason(ctx, dm, ctx.idx.block_by_dev[backing])
    kernel_name = ctx.idx.block_by_dev.get(backing)
    if kernel_name is not None and kernel_name.startswith("nvme") and ctx.idx.subsystems_unread:
        return None, (f"linear over {kernel_name}, whose NVMe subsystem may be one that could not "
                      f"be read ({ctx.idx.subsystems_unread})")
    if kernel_name is not None:
        return False, f"linear over {kernel_name}, not an NVMe-oF or ublk device"
    if ctx.idx.blocks_unread:
        return None, f"backing {backing} was not among the block devices read ({ctx.idx.blocks_unread})"
    return _gone_backing_reason(ctx, dm, backing)


def _named_for(dm: DmDevice, subsystem: NvmeSubsystem, what: str) -> tuple[bool, str]:
    """Longhorn names the dm device over an engine's namespace after the volume its NQN names."""
    volume = volume_of_nqn(subsystem.nqn)
    if volume != dm.name:
        return False, f"{what} {subsystem.nqn}, whose volume is {volume or 'unnamed'}, not {dm.name}"
    return True, f"{what} {subsystem.nqn}"


def _has_own_node(ctx: _Context, dm: DmDevice) -> bool:
    """True when /dev/longhorn/<dm name> is a block node carrying this very device's number."""
    node = ctx.idx.nodes.get(dm.name)
    return node is not None and node.node_type is NodeType.BLOCK and node.rdev == dm.dev


def _ublk_reason(ctx: _Context, dm: DmDevice, ublk: str) -> tuple[Optional[bool], str]:
    """Any ublk server makes ublk disks: Longhorn's UBLK frontend is told by its endpoint node."""
    if _has_own_node(ctx, dm):
        return True, f"linear over ublk device {ublk}; /dev/longhorn/{dm.name} points at it"
    if ctx.idx.nodes_unknown:
        return None, f"linear over ublk device {ublk} and /dev/longhorn is unknown ({ctx.idx.nodes_unknown})"
    return False, f"linear over ublk device {ublk}, and no /dev/longhorn/{dm.name} points at it"


def _gone_backing_reason(ctx: _Context, dm: DmDevice, backing: DevNum) -> tuple[Optional[bool], str]:
    """Backing device gone: only a matching /dev/longhorn node or the kernel's own link proves it."""
    if _has_own_node(ctx, dm):
        return True, f"backing {backing} is gone; /dev/longhorn/{dm.name} points at it"
    for link in dm.dangling_slaves:
        match = _SUBSYS_IN_LINK.search(link)
        subsystem = ctx.idx.subsystems.get(match.group(1)) if match else None
        if subsystem is not None and subsystem.is_longhorn:
            return _named_for(dm, subsystem, f"backing {backing} is gone; it was a namespace of")
    if ctx.idx.nodes_unknown:
        return None, f"backing {backing} is gone and /dev/longhorn is unknown ({ctx.idx.nodes_unknown})"
    return False, f"backing {backing} is gone and nothing proves the device was Longhorn's"


def _dm_verdict(ctx: _Context, dm: DmDevice, child: Optional[DmDevice], backing_present: bool) -> _Verdict:
    """Verdict of an owned dm device (and its child)."""
    node = ctx.idx.nodes.get(dm.name)
    age_ns = node.ctime_ns if node is not None and node.rdev == dm.dev else None
    return _verdict(ctx, dm.name, age_ns, backing_present, lambda: _dm_busy(ctx, dm, child))


def _verdict(ctx: _Context, volume: str, age_ns: Optional[int], backing_present: bool,
             use: Callable[[], DeviceUse]) -> _Verdict:
    """Runtime and age first, then who uses it (asked only then): an owned entry's verdict."""
    held = _liveness(ctx, volume, age_ns, backing_present)
    if held is not None:
        return held
    found = use()
    if found.busy:
        return _Verdict(Verdict.BUSY, "; ".join(found.busy), found.busy)
    if found.unknown:
        return _Verdict(Verdict.UNKNOWN, f"cannot tell whether it is in use: {'; '.join(found.unknown)}")
    return _Verdict(Verdict.STALE, _stale_because(ctx))


def _liveness(ctx: _Context, volume: str, age_ns: Optional[int],
              backing_present: bool) -> Optional[_Verdict]:
    """Rules unknown-runtime-acts-not and respect-live-instance-manager: a verdict, else None."""
    if ctx.runtime.state is not RuntimeState.KNOWN:
        return _Verdict(Verdict.UNKNOWN, f"runtime unknown: {ctx.runtime.reason}")
    if ctx.idx.nodes_unknown:  # its age, and which nodes still point at it, are unknown
        return _Verdict(Verdict.UNKNOWN, f"/dev/longhorn unknown: {ctx.idx.nodes_unknown}")
    if age_ns is not None and ctx.now_ns - age_ns < ctx.grace_ns:
        return _Verdict(Verdict.LIVE, "younger than the grace period", grace_ends_ns=age_ns + ctx.grace_ns)
    since = ctx.live_since_ns
    if since is None:
        return None
    names = ctx.im_names
    if backing_present:
        return _Verdict(Verdict.LIVE, f"instance-manager {names} is running and may own it")
    if volume in ctx.idx.frontend_records:
        return _Verdict(Verdict.LIVE, f"instance-manager {names} may re-adopt it (engine-frontend record)")
    if age_ns is None:
        return _Verdict(Verdict.LIVE, f"instance-manager {names} is running and the device's age is unknown")
    if since > ctx.now_ns:  # one host clock for both: it was set back since the container started
        return _Verdict(Verdict.UNKNOWN, f"instance-manager {names} was created after now by this "
                        "host's clock (set back?): the device's age cannot be compared with it")
    if age_ns >= since:
        return _Verdict(Verdict.LIVE, f"made after instance-manager {names} started")
    if ctx.idx.records_unknown:  # it may have a record
        return _Verdict(Verdict.UNKNOWN, f"instance-manager {names} is running and may re-adopt it: "
                        f"{ctx.idx.records_unknown}")
    return None


def _stale_because(ctx: _Context) -> str:
    if ctx.live_since_ns is None:
        return "no V2 instance-manager runs on this node"
    return f"older than running instance-manager {ctx.im_names} and its backing is gone"


def _dm_busy(ctx: _Context, dm: DmDevice, child: Optional[DmDevice]) -> DeviceUse:
    """Rule never-touch-busy: who uses the device (or its child), and what could not be told."""
    use = DeviceUse()
    for member in ([child] if child else []) + [dm]:
        use += _busy_reasons(ctx, member, allowed_holders=_kernel_names(ctx, child))
    return use


def _kernel_names(ctx: _Context, dm: Optional[DmDevice]) -> frozenset[str]:
    if dm is None:
        return frozenset()
    name = ctx.idx.block_by_dev.get(dm.dev)
    return frozenset([name]) if name else frozenset()


def _busy_reasons(ctx: _Context, dm: DmDevice, allowed_holders: frozenset[str]) -> DeviceUse:
    names = {h: f"{h} ({d.name})" for h in dm.holders or () for d in [ctx.idx.dm_by_kernel_name.get(h)] if d}
    return ctx.idx.usage.of_dm(dm, allowed_holders, names)


# ---------------------------------------------------------------- /dev/longhorn nodes


def _plan_node(ctx: _Context, node: LonghornNode, dm: dict[str, _Draft]) -> _Draft:
    identity = Identity(name=node.name, dev=node.rdev, inode=node.inode)
    draft = _Draft(Kind.NODE, node.name, Verdict.FOREIGN, "", identity, node.name, ORDER_NODE)
    pattern = ctx.config.excluded(node.name)
    if node.node_type is not NodeType.BLOCK or node.rdev is None:
        draft.reason = f"not a block device node ({node.node_type.value}): reported, never touched"
    elif pattern:
        draft.reason = f"excluded by sweep.exclude pattern {pattern!r}"
    elif not fits_name(node.name):
        draft.reason = "the name is not Longhorn-shaped"
    else:
        _node_target(ctx, node, node.rdev, dm, draft)
        draft.identity = Identity(name=node.name, dev=node.rdev, inode=node.inode,
                                  points_at=_points_at_unlink(ctx, node.rdev, draft))
    return draft


def _points_at_unlink(ctx: _Context, rdev: DevNum, draft: _Draft) -> str:
    """What the node's number must be when it is unlinked: free once its dm devices went first."""
    if any(kind is Kind.DM for kind, _ in draft.after):
        return ""
    dm = ctx.idx.dm_by_dev.get(rdev)
    namespace = ctx.idx.namespaces.get(rdev)
    kernel_name = ctx.idx.block_by_dev.get(rdev) or (namespace[0].name if namespace else None)
    return device_at(kernel_name, dm.name if dm else None)


def _node_target(ctx: _Context, node: LonghornNode, rdev: DevNum, dm: dict[str, _Draft],
                 draft: _Draft) -> None:
    """Rule node-name-matches-device: resolve a node by its device number, never by its name."""
    target = ctx.idx.dm_by_dev.get(rdev)
    if target is not None and target.name in (node.name, node.name + ENCRYPTED_SUFFIX):
        _follow_dm(dm[target.name], dm, draft)
        return
    namespace = ctx.idx.namespaces.get(rdev)
    if target is not None:
        what = f"points at {rdev}, which is now dm {target.name!r}: a leftover whose number was reused"
    elif namespace is not None and namespace[1].is_longhorn:
        _node_on_namespace(ctx, node, namespace[0], draft)
        return
    elif rdev in ctx.idx.block_by_dev:
        draft.reason = f"points at {ctx.idx.block_by_dev[rdev]} ({rdev}), not a Longhorn V2 device"
        return
    elif ctx.idx.blocks_unread:
        draft.verdict = Verdict.UNKNOWN
        draft.reason = f"points at {rdev}, not among the block devices read ({ctx.idx.blocks_unread})"
        return
    else:
        what = f"points at {rdev}, which no longer exists"
    _decide(ctx, draft, node.ctime_ns, what, lambda: ctx.idx.usage.of_device(node.name, rdev))


def _follow_dm(dm_draft: _Draft, dm: dict[str, _Draft], draft: _Draft) -> None:
    """A node named after its dm device shares that device's verdict; it goes after the volume's dm."""
    draft.verdict = dm_draft.verdict
    draft.volume = dm_draft.volume
    draft.holders = dm_draft.holders
    draft.grace_ends_ns = dm_draft.grace_ends_ns
    draft.reason = f"points at dm {dm_draft.name!r}, which is {dm_draft.verdict.value}: {dm_draft.reason}"
    if dm_draft.verdict is Verdict.STALE:
        # The volume's group: its linear device, and its -encrypted child when there is one.
        group = [dm.get(dm_draft.volume), dm.get(dm_draft.volume + ENCRYPTED_SUFFIX)]
        draft.after.extend((Kind.DM, d.name) for d in group
                           if d is not None and d.volume == dm_draft.volume and d.verdict is Verdict.STALE)


def _node_on_namespace(ctx: _Context, node: LonghornNode, ns: NvmeNamespace, draft: _Draft) -> None:
    """A backup initiator's node points straight at a Longhorn NVMe namespace."""
    _decide(ctx, draft, node.ctime_ns, f"points at Longhorn namespace {ns.name}",
            lambda: ctx.idx.usage.of_namespace(ns, ns.holders), backing_present=True)


def _decide(ctx: _Context, draft: _Draft, age_ns: Optional[int], what: str,
            use: Callable[[], DeviceUse], backing_present: bool = False) -> None:
    draft.decided(_verdict(ctx, draft.volume, age_ns, backing_present, use), f"; {what}")


# ---------------------------------------------------------------- NVMe subsystems


def _plan_subsystem(ctx: _Context, subsystem: NvmeSubsystem, dm: dict[str, _Draft],
                    nodes_by_dev: dict[DevNum, list[_Draft]]) -> _Draft:
    identity = Identity(name=subsystem.name, nqn=subsystem.nqn,
                        controllers=tuple(c.name for c in subsystem.controllers))
    volume = volume_of_nqn(subsystem.nqn)
    draft = _Draft(Kind.NVME, subsystem.nqn, Verdict.FOREIGN, "", identity, volume, ORDER_NVME)
    # Excluding a volume by its name keeps its controller too, not only its dm device and node.
    pattern = ctx.config.excluded(subsystem.nqn) or (ctx.config.excluded(volume) if volume else None)
    if not subsystem.is_longhorn:
        draft.reason = "NQN is not Longhorn's"
    elif not volume:
        draft.reason = "the NQN's volume name is not Longhorn-shaped"
    elif pattern:
        draft.reason = f"excluded by sweep.exclude pattern {pattern!r}"
    else:
        what = f"controllers {', '.join(c.name for c in subsystem.controllers)}"
        # Its namespaces' users are asked only when runtime and age leave the verdict open (and
        # so always before a stale verdict).
        users: list[tuple[DeviceUse, list[tuple[Kind, str]]]] = []

        def use() -> DeviceUse:
            if not users:  # read once, however often the verdict asks
                users.append(_namespace_users(ctx, subsystem, dm, nodes_by_dev))
            return users[0][0]

        _decide(ctx, draft, None, what, use, backing_present=True)
        if draft.verdict is Verdict.STALE:
            draft.after.extend(users[0][1])
    return draft


def _namespace_users(ctx: _Context, subsystem: NvmeSubsystem, dm: dict[str, _Draft],
                     nodes_by_dev: dict[DevNum, list[_Draft]]) -> tuple[DeviceUse, list[tuple[Kind, str]]]:
    """What still uses the subsystem's namespaces: blockers, and stale users to remove first.

    A /dev/longhorn node on a namespace is one: a stale one goes first, any other (a backup
    initiator's node inside the grace period, say) keeps the subsystem it would dangle from.
    """
    use = DeviceUse()
    busy: list[str] = []
    unknown: list[str] = []
    after: list[tuple[Kind, str]] = []
    for ns in subsystem.namespaces:
        # Its dm holders are weighed below: a stale one is removed first, any other blocks.
        use += ctx.idx.usage.of_namespace(ns, None if ns.holders is None else ())
        for holder in ns.holders or ():
            user = ctx.idx.dm_by_kernel_name.get(holder)
            draft = dm.get(user.name) if user else None
            if draft is not None and draft.verdict is Verdict.STALE:
                after.append((Kind.DM, draft.name))
            else:
                state = draft.verdict.value if draft else "unknown"
                busy.append(f"{ns.name} is held by {holder} ({state})")
        for node in nodes_by_dev.get(ns.dev, ()):
            if node.verdict is Verdict.STALE:
                after.append((Kind.NODE, node.name))
            elif node.verdict is Verdict.UNKNOWN:
                unknown.append(f"/dev/longhorn/{node.name} on {ns.name} is unknown")
            else:
                busy.append(f"{ns.name} has /dev/longhorn/{node.name} ({node.verdict.value})")
    return use + DeviceUse(tuple(busy), tuple(unknown)), after
