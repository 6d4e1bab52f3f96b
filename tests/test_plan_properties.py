"""Property tests: over generated hosts, the plan never removes what it must not touch."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lhsweep.config import Config
from lhsweep.model import (
    LONGHORN_NQN_PREFIX,
    BlockDevice,
    DevNum,
    DmDevice,
    DmTarget,
    Inventory,
    Kind,
    LoopDevice,
    NodeType,
    Opener,
    Plan,
    RuntimeView,
    Unknown,
)
from lhsweep.plan import make_plan
from tests.examples import examples
from tests.inventories import SECOND, Host, instance_manager, runtime_unknown, runtime_with

NOW = 1_800_000_000.0
NOW_NS = int(NOW * 1e9)

volume_fields = {
    "age_s": st.sampled_from([1, 20, 100, 1000, 100_000]),
    "backing_gone": st.booleans(),
    "node": st.booleans(),
    "open_count": st.sampled_from([0, 0, 0, 1, 2]),
    "mounted": st.sampled_from([False, False, False, True]),
    "encrypted": st.sampled_from([False, False, True]),
    "engine_nqn": st.booleans(),
    # Users only /proc and sysfs show, and per-device facts that could not be read.
    "opened_by": st.sampled_from([None, None, None, "dm", "namespace"]),
    "loop_on": st.sampled_from([None, None, None, None, "dm"]),
    "holders_unknown": st.sampled_from([False, False, False, False, True]),
    "open_count_unknown": st.sampled_from([False, False, False, False, True]),
}
# Half the volumes have no user and every per-device fact read: only those can be removed, and
# without them few generated hosts would plan a removal at all.
unused = {"open_count": st.just(0), "mounted": st.just(False), "opened_by": st.just(None),
          "loop_on": st.just(None), "holders_unknown": st.just(False), "open_count_unknown": st.just(False)}
volume_spec = st.one_of(st.fixed_dictionaries(volume_fields),
                        st.fixed_dictionaries({**volume_fields, **unused}))

# Host-wide facts: on half the hosts all read; on the others each unknown (with its reason) now and then.
HOST_FACTS = ("nodes", "mounts", "openers", "loops", "unresolved_loop")
fact_spec = st.one_of(
    st.just(dict.fromkeys(HOST_FACTS, False)),
    st.fixed_dictionaries({fact: st.sampled_from([False] * 7 + [True]) for fact in HOST_FACTS}),
)

runtime_spec = st.one_of(
    st.just("unknown"),
    st.just("none"),
    st.tuples(st.sampled_from(["live", "live", "exited"]), st.sampled_from([5, 50, 500, 5000, 500_000])),
    st.tuples(st.just("live"), st.sampled_from([50, 500, 5000])),
)


# Debian's Hypothesis (6.67) under the unit tier's capped examples fails its data_too_large health
# check on this strategy now and then (about 1 run in 3 of this file), never with the default
# profile CI runs: a host is a few bounded lists, so the check is left out here.
_HEALTH = [HealthCheck.data_too_large]


@st.composite
def hosts(draw: st.DrawFn) -> tuple[Inventory, RuntimeView, frozenset[str]]:
    """A random host with Longhorn volumes in every state, foreign devices and odd nodes."""
    host = Host()
    specs = draw(st.lists(volume_spec, max_size=6))
    for i, spec in enumerate(specs):
        name = f"pvc-{i}"
        nqn = f"{LONGHORN_NQN_PREFIX}{name}-e-0123abcd" if spec["engine_nqn"] else None
        dm = host.add_volume(name, ctime_ns=NOW_NS - spec["age_s"] * SECOND,
                             backing_gone=spec["backing_gone"], node=spec["node"],
                             open_count=spec["open_count"], mounted=spec["mounted"],
                             encrypted=spec["encrypted"], nqn=nqn)
        _add_users(host, dm, spec)
    facts = draw(fact_spec)
    for fact in ("nodes", "mounts", "openers", "loops"):
        if facts[fact]:
            host.unknown[fact] = f"{fact}: cannot read (generated)"
    if facts["unresolved_loop"]:
        host.loops.append(LoopDevice("loop9", "/dev/longhorn/x (deleted)", None))
    for i in range(draw(st.integers(0, 2))):
        host.add_v1_encrypted(f"v1-{i}", NOW_NS - 1000 * SECOND)
    sd = DevNum(8, 240)
    host.blocks.append(BlockDevice("sdp", sd))
    for i in range(draw(st.integers(0, 2))):
        host.add_dm(f"vg-lv{i}", (DmTarget(0, 8, "linear", sd),), uuid=f"LVM-{i}")
        host.add_dm(f"mpath{i}", (DmTarget(0, 8, "multipath", None),))
    for i in range(draw(st.integers(0, 2))):
        host.add_node(f"gone-{i}", DevNum(253, 200 + i), NOW_NS - draw(st.sampled_from([1, 1000])) * SECOND)
    if host.dm and draw(st.booleans()):
        host.add_node("stray", draw(st.sampled_from(host.dm)).dev, NOW_NS - 1000 * SECOND)
    host.add_node("link", None, NOW_NS, draw(st.sampled_from([NodeType.SYMLINK, NodeType.REGULAR])))
    # Now and then a /sys/dev/block entry, or a subsystem, that could not be read.
    if draw(st.sampled_from([False] * 5 + [True])):
        for block in draw(st.lists(st.sampled_from(host.blocks), max_size=3, unique=True)):
            host.hide_block(block)
    if host.subsystems and draw(st.sampled_from([False] * 5 + [True])):
        host.hide_subsystem(draw(st.sampled_from(host.subsystems)))
    records = frozenset(f"pvc-{i}" for i in range(len(specs)) if draw(st.booleans()))
    return host.inventory(), _runtime(draw(runtime_spec)), records


def _add_users(host: Host, dm: DmDevice, spec: dict) -> None:
    """Give a generated volume the users and unreadable facts its spec asks for."""
    assert dm.targets is not None
    if spec["opened_by"] == "dm":
        host.openers.append(Opener(dm.dev, 100 + dm.dev.minor, "reader"))
    elif spec["opened_by"] == "namespace" and dm.targets[0].backing is not None:
        host.openers.append(Opener(dm.targets[0].backing, 200 + dm.dev.minor, "dd"))
    if spec["loop_on"]:
        host.loops.append(LoopDevice(f"loop{dm.dev.minor}", f"/dev/longhorn/{dm.name}", dm.dev))
    if spec["holders_unknown"] or spec["open_count_unknown"]:
        i = next(i for i, d in enumerate(host.dm) if d.name == dm.name)
        current = host.dm[i]
        host.dm[i] = current._replace(holders=None if spec["holders_unknown"] else current.holders,
                                      open_count=None if spec["open_count_unknown"] else current.open_count)


def _runtime(spec: object) -> RuntimeView:
    if spec == "unknown":
        return runtime_unknown()
    if spec == "none":
        return runtime_with()
    assert isinstance(spec, tuple)
    state, age_s = spec
    return runtime_with(instance_manager(NOW_NS - age_s * SECOND, running=state == "live"))


def _plan(inv: Inventory, runtime: RuntimeView, records: frozenset[str]) -> Plan:
    return make_plan(inv._replace(frontend_records=records), runtime, Config(sweep_grace_period=30.0), NOW)


def _check_dm_removal(inv: Inventory, name: str, removed: set[tuple[Kind, str]], kernel: dict) -> None:
    dm = next(d for d in inv.dm_devices if d.name == name)
    assert dm.targets is not None and len(dm.targets) == 1
    target = dm.targets[0]
    if target.target_type == "crypt":
        parent = next(d for d in inv.dm_devices if d.dev == target.backing)
        assert name == parent.name + "-encrypted" and (Kind.DM, parent.name) in removed
    else:
        assert target.target_type == "linear" and dm.uuid == ""
    removed_kernel = {kernel[d.dev] for d in inv.dm_devices if (Kind.DM, d.name) in removed}
    assert set(dm.holders) <= removed_kernel, "a holder that stays"
    assert (dm.open_count or 0) - len(dm.holders) <= 0, "open by something other than a removed child"
    assert not isinstance(inv.mounts, Unknown) and dm.dev not in {m.dev for m in inv.mounts}, "mounted"
    assert not dm.suspended
    assert dm.holders is not None and dm.open_count is not None, "removed on an unread fact"


def _check_removals(inv: Inventory, runtime: RuntimeView, plan: Plan) -> None:
    removed = {(e.kind, e.name) for e in plan.removals}
    kernel = {b.dev: b.name for b in inv.block_devices}
    read = set(kernel) | {ns.dev for s in inv.subsystems for ns in s.namespaces}
    if removed:
        # A removal rests only on facts positively read, and never on a device anyone uses.
        facts = (inv.nodes, inv.mounts, inv.openers, inv.loops)
        assert not any(isinstance(f, Unknown) for f in facts), "removed while a host fact is unknown"
        assert all(loop.backing is not None for loop in inv.loops), "a loop's backing is unknown"
        used = {o.dev for o in inv.openers} | {loop.backing for loop in inv.loops}
        for entry in plan.removals:
            devs = {entry.identity.dev} if entry.kind is not Kind.NVME else \
                {ns.dev for s in inv.subsystems if s.nqn == entry.name for ns in s.namespaces}
            assert not devs & used, f"{entry.name} is open or backs a loop device"
        for kind in sorted({e.kind.value for e in plan.removals}):
            event(f"plans a {kind} removal")
    mounted = {m.dev for m in inv.mounts} if not isinstance(inv.mounts, Unknown) else set()
    live = runtime.live_instance_managers
    for kind, name in removed:
        if kind is Kind.DM:
            _check_dm_removal(inv, name, removed, kernel)
            dm = next(d for d in inv.dm_devices if d.name == name)
            backing_present = dm.targets is not None and dm.targets[0].backing in read
            assert not (live and backing_present and dm.targets[0].target_type == "linear")
            assert backing_present or not inv.blocks_unread, "backing called gone on a partial list"
        elif kind is Kind.NODE:
            assert not isinstance(inv.nodes, Unknown)
            node = next(n for n in inv.nodes if n.name == name)
            assert node.node_type is NodeType.BLOCK
            assert node.rdev in read or not inv.blocks_unread, "device called gone on a partial list"
            assert not (live and node.ctime_ns >= min(im.created_at_ns for im in live))
        else:
            sub = next(s for s in inv.subsystems if s.nqn == name)
            assert sub.is_longhorn and not live
            for ns in sub.namespaces:
                assert ns.dev not in mounted and ns.holders is not None
                users = {d.name for d in inv.dm_devices if kernel.get(d.dev) in ns.holders}
                assert all((Kind.DM, u) in removed for u in users)


@settings(max_examples=examples(500), deadline=None, suppress_health_check=_HEALTH)
@given(hosts())
def test_nothing_busy_foreign_or_owned_by_a_live_instance_manager_is_removed(case) -> None:
    inv, runtime, records = case
    plan = _plan(inv, runtime, records)
    _check_removals(inv, runtime, plan)
    for entry in plan.removals:
        for kind, name in entry.after:
            assert (kind, name) in {(e.kind, e.name) for e in plan.removals}, "waits for a kept entry"


@settings(max_examples=examples(150), deadline=None, suppress_health_check=_HEALTH)
@given(hosts())
def test_unknown_runtime_gives_an_empty_removal_plan(case) -> None:
    inv, _, records = case
    plan = _plan(inv, runtime_unknown("socket missing"), records)
    assert plan.removals == ()
    assert all(e.verdict.value in ("unknown", "foreign") for e in plan.entries)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=_HEALTH)
@given(hosts(), st.randoms(use_true_random=False))
def test_planning_is_deterministic_and_ignores_input_order(case, rnd: random.Random) -> None:
    inv, runtime, records = case
    first = _plan(inv, runtime, records)
    assert _plan(inv, runtime, records) == first
    def shuffle(part):  # an Unknown fact stays as it is
        if isinstance(part, Unknown):
            return part
        items = list(part)
        rnd.shuffle(items)  # Hypothesis' sample() refuses an empty population
        return tuple(items)
    shuffled = inv._replace(**{name: shuffle(getattr(inv, name)) for name in (
        "dm_devices", "nodes", "subsystems", "block_devices", "ublk_devices", "mounts", "openers", "loops")})
    assert _plan(shuffled, runtime, records) == first


@settings(max_examples=examples(100), deadline=None, suppress_health_check=_HEALTH)
@given(hosts())
def test_every_object_gets_exactly_one_entry(case) -> None:
    inv, runtime, records = case
    plan = _plan(inv, runtime, records)
    keys = [(e.kind, e.name) for e in plan.entries]
    assert len(keys) == len(set(keys))
    assert {n for k, n in keys if k is Kind.DM} == {d.name for d in inv.dm_devices}
    assert {n for k, n in keys if k is Kind.NODE} == \
        (set() if isinstance(inv.nodes, Unknown) else {n.name for n in inv.nodes})


def test_generated_hosts_reach_removals_of_every_kind() -> None:
    """The properties above are not vacuous: a fixed draw of hosts plans removals, of every kind."""
    planned: Counter[str] = Counter()

    @settings(max_examples=150, derandomize=True, database=None, deadline=None)
    @given(hosts())
    def draw(case: tuple[Inventory, RuntimeView, frozenset[str]]) -> None:
        removals = _plan(*case).removals
        planned["hosts"] += 1
        planned["hosts with removals"] += bool(removals)
        planned.update({e.kind.value for e in removals})

    draw()
    # About a quarter do; the generator before the unused volumes and all-read hosts: a tenth, no nvme.
    assert planned["hosts with removals"] * 8 >= planned["hosts"], planned
    assert all(planned[kind.value] for kind in Kind), planned
