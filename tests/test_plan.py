"""The plan on hand-made inventories: each rule of docs/design.md, case by case."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lhsweep.config import Config
from lhsweep.model import (
    LONGHORN_NQN_PREFIX,
    BlockDevice,
    DevNum,
    DmDevice,
    DmTarget,
    Fact,
    Kind,
    LoopDevice,
    NodeType,
    Opener,
    Plan,
    Unknown,
)
from lhsweep.plan import make_plan
from tests.inventories import SECOND, Host, instance_manager, runtime_unknown, runtime_with

NOW = 1_800_000_000.0
NOW_NS = int(NOW * 1e9)
OLD = NOW_NS - 3600 * SECOND
CONFIG = Config()


def verdicts(plan: Plan) -> dict[tuple[str, str], str]:
    """(kind, name) -> verdict, for compact assertions."""
    return {(e.kind.value, e.name): e.verdict.value for e in plan.entries}


def plan_of(host: Host, runtime=None, config: Config = CONFIG,
            records: Fact[frozenset[str]] = frozenset()) -> Plan:
    inventory = host.inventory()._replace(frontend_records=records)
    return make_plan(inventory, runtime or runtime_with(), config, NOW)


def test_crashed_instance_manager_leaves_dm_node_and_controller_stale() -> None:
    host = Host()
    host.add_volume("pvc-1", ctime_ns=OLD)
    plan = plan_of(host)
    nqn = f"{LONGHORN_NQN_PREFIX}volume-pvc-1"
    assert verdicts(plan) == {("dm", "pvc-1"): "stale", ("node", "pvc-1"): "stale", ("nvme", nqn): "stale"}
    order = [(e.kind, e.name) for e in plan.removals]
    assert order == [(Kind.DM, "pvc-1"), (Kind.NODE, "pvc-1"), (Kind.NVME, nqn)]
    node = next(e for e in plan.entries if e.kind is Kind.NODE)
    assert (Kind.DM, "pvc-1") in node.after
    nvme = next(e for e in plan.entries if e.kind is Kind.NVME)
    assert (Kind.DM, "pvc-1") in nvme.after and nvme.volume == "pvc-1"


def test_v1_encrypted_volume_is_foreign_with_its_node() -> None:
    host = Host()
    host.add_v1_encrypted("pvc-v1", OLD)
    plan = plan_of(host)
    assert verdicts(plan) == {("dm", "pvc-v1"): "foreign", ("node", "pvc-v1"): "foreign"}
    assert plan.removals == ()


def test_mounted_stale_volume_is_busy_and_so_is_its_controller() -> None:
    host = Host()
    host.add_volume("pvc-m", ctime_ns=OLD, mounted=True, open_count=1)
    plan = plan_of(host)
    v = verdicts(plan)
    assert v[("dm", "pvc-m")] == "busy" and v[("node", "pvc-m")] == "busy"
    assert v[("nvme", f"{LONGHORN_NQN_PREFIX}volume-pvc-m")] == "busy"
    dm = next(e for e in plan.entries if e.kind is Kind.DM)
    assert "mounted on /var/lib/kubelet/pods/x/volumes/pvc-m" in dm.reason
    assert dm.holders == ("pvc-m is open 1 time(s)",
                          "pvc-m is mounted on /var/lib/kubelet/pods/x/volumes/pvc-m")
    node = next(e for e in plan.entries if e.kind is Kind.NODE)
    assert node.holders == dm.holders
    assert plan.removals == ()


def test_live_instance_manager_keeps_its_volumes() -> None:
    host = Host()
    host.add_volume("pvc-live", ctime_ns=OLD)
    plan = plan_of(host, runtime_with(instance_manager(OLD - SECOND)))
    assert set(verdicts(plan).values()) == {"live"}


def test_live_instance_manager_allows_only_older_devices_whose_backing_is_gone() -> None:
    host = Host()
    host.add_volume("pvc-old", ctime_ns=OLD, backing_gone=True)
    host.add_volume("pvc-new", ctime_ns=NOW_NS - 60 * SECOND, backing_gone=True)
    host.add_volume("pvc-rec", ctime_ns=OLD, backing_gone=True)
    im_started = NOW_NS - 600 * SECOND
    plan = plan_of(host, runtime_with(instance_manager(im_started)), records=frozenset({"pvc-rec"}))
    v = verdicts(plan)
    assert v[("dm", "pvc-old")] == "stale" and v[("node", "pvc-old")] == "stale"
    assert v[("dm", "pvc-new")] == "live"
    assert v[("dm", "pvc-rec")] == "live"
    assert "re-adopt" in next(e.reason for e in plan.entries if e.name == "pvc-rec" and e.kind is Kind.DM)


def test_unreadable_engine_frontend_records_keep_what_a_running_instance_manager_may_re_adopt() -> None:
    """Rule fail-closed: without the records, any volume may have one; with no instance-manager
    running, records do not matter."""
    host = Host()
    host.add_volume("pvc-old", ctime_ns=OLD, backing_gone=True)
    host.add_volume("pvc-new", ctime_ns=NOW_NS - 60 * SECOND, backing_gone=True)
    unreadable = Unknown("engine-frontend records unknown: /var/lib/longhorn/metadata/enginefrontends: "
                         "cannot list: Permission denied")
    plan = plan_of(host, runtime_with(instance_manager(NOW_NS - 600 * SECOND)), records=unreadable)
    v = verdicts(plan)
    assert v[("dm", "pvc-old")] == "unknown" and v[("node", "pvc-old")] == "unknown"
    assert v[("dm", "pvc-new")] == "live"
    assert "Permission denied" in next(e.reason for e in plan.entries if e.name == "pvc-old")
    assert set(verdicts(plan_of(host, records=unreadable)).values()) == {"stale"}


def test_unknown_runtime_removes_nothing_and_says_why() -> None:
    host = Host()
    host.add_volume("pvc-1", ctime_ns=OLD)
    plan = plan_of(host, runtime_unknown("timeout after 2.0s"))
    assert set(verdicts(plan).values()) == {"unknown"}
    assert all("timeout after 2.0s" in e.reason for e in plan.entries)
    assert plan.removals == ()


def test_lvm_multipath_and_plain_linear_are_foreign() -> None:
    host = Host()
    sd = DevNum(8, 0)
    host.blocks.append(BlockDevice("sda", sd))
    host.add_dm("vg0-lv0", (DmTarget(0, 100, "linear", sd),), uuid="LVM-abcdef")
    host.add_dm("mpatha", (DmTarget(0, 100, "multipath", None),), uuid="mpath-3600")
    host.add_dm("plain", (DmTarget(0, 100, "linear", sd),))
    host.add_dm("striped", (DmTarget(0, 50, "linear", sd), DmTarget(50, 50, "linear", sd)))
    plan = plan_of(host)
    assert set(verdicts(plan).values()) == {"foreign"}


def test_dangling_node_is_stale_and_a_reused_number_never_vouches() -> None:
    host = Host()
    host.add_node("pvc-gone", DevNum(253, 40), OLD)
    other = host.add_volume("pvc-b", ctime_ns=OLD, node=False)
    host.add_node("pvc-a", other.dev, OLD)
    plan = plan_of(host, runtime_with(instance_manager(NOW_NS - 10 * SECOND)))
    v = verdicts(plan)
    assert v[("node", "pvc-gone")] == "stale"
    assert v[("node", "pvc-a")] == "stale"
    # pvc-b's device is owned by the live instance-manager: the stray node pointing at it does not matter.
    assert v[("dm", "pvc-b")] == "live"
    reason = next(e.reason for e in plan.entries if e.name == "pvc-a")
    assert "now dm 'pvc-b'" in reason


def test_symlink_and_regular_file_are_reported_never_removed() -> None:
    host = Host()
    host.add_node("pvc-link", None, OLD, NodeType.SYMLINK)
    host.add_node("pvc-file", None, OLD, NodeType.REGULAR)
    plan = plan_of(host)
    assert verdicts(plan) == {("node", "pvc-link"): "foreign", ("node", "pvc-file"): "foreign"}
    assert "symlink" in plan.entries[0].reason or "symlink" in plan.entries[1].reason


def test_encrypted_v2_volume_goes_child_first() -> None:
    host = Host()
    host.add_volume("pvc-enc", ctime_ns=OLD, encrypted=True)
    plan = plan_of(host)
    order = [(e.kind.value, e.name) for e in plan.removals]
    assert order[:3] == [("dm", "pvc-enc-encrypted"), ("dm", "pvc-enc"), ("node", "pvc-enc")]
    parent = next(e for e in plan.entries if e.name == "pvc-enc" and e.kind is Kind.DM)
    assert (Kind.DM, "pvc-enc-encrypted") in parent.after


def test_encrypted_v2_volume_in_use_makes_both_busy() -> None:
    host = Host()
    host.add_volume("pvc-enc", ctime_ns=OLD, encrypted=True, mounted=True)
    v = verdicts(plan_of(host))
    assert v[("dm", "pvc-enc")] == "busy" and v[("dm", "pvc-enc-encrypted")] == "busy"


def test_backing_gone_without_proof_is_foreign() -> None:
    host = Host()
    host.add_volume("pvc-x", ctime_ns=OLD, backing_gone=True, node=False)
    assert verdicts(plan_of(host)) == {("dm", "pvc-x"): "foreign"}


def test_grace_period_and_exclude_patterns() -> None:
    host = Host()
    host.add_volume("pvc-young", ctime_ns=NOW_NS - 5 * SECOND)
    host.add_volume("keep-me", ctime_ns=OLD)
    config = Config(sweep_grace_period=30.0, sweep_exclude=("keep-*",))
    plan = plan_of(host, config=config)
    v = verdicts(plan)
    assert v[("dm", "pvc-young")] == "live"
    assert v[("dm", "keep-me")] == "foreign" and v[("node", "keep-me")] == "foreign"
    # The daemon is told when pvc-young leaves its grace period: 25 s from now.
    assert plan.next_grace_end_ns == NOW_NS + 25 * SECOND
    assert {e.name for e in plan.entries if e.grace_ends_ns} == {"pvc-young"}
    assert plan_of(Host(), config=config).next_grace_end_ns is None


def test_an_excluded_encrypted_child_keeps_its_whole_volume() -> None:
    """sweep.exclude naming only `<vol>-encrypted`: the child is never touched, so neither is
    what it holds (its parent dm device), nor the node on it, nor the controller under them."""
    host = Host()
    host.add_volume("pvc-1", ctime_ns=OLD, encrypted=True)
    plan = plan_of(host, config=Config(sweep_exclude=("pvc-1-encrypted",)))
    v = verdicts(plan)
    assert v[("dm", "pvc-1-encrypted")] == "foreign" and v[("node", "pvc-1")] == "foreign"
    assert v[("dm", "pvc-1")] == "busy" and v[("nvme", f"{LONGHORN_NQN_PREFIX}volume-pvc-1")] == "busy"
    assert plan.removals == ()


def test_an_instance_manager_created_in_the_future_leaves_older_leftovers_unknown() -> None:
    """Fail closed on time: "older than the instance-manager" rests on its creation time, which
    shares this host's clock; one after now means that clock was set back, not a real age."""
    host = Host()
    host.add_volume("pvc-f", ctime_ns=NOW_NS - 300 * SECOND, backing_gone=True)
    future = plan_of(host, runtime_with(instance_manager(NOW_NS + 3600 * SECOND)))
    assert verdicts(future)[("dm", "pvc-f")] == "unknown" and future.removals == ()
    assert "set back" in next(e.reason for e in future.entries if e.name == "pvc-f")
    started_before = plan_of(host, runtime_with(instance_manager(NOW_NS - SECOND)))
    assert verdicts(started_before)[("dm", "pvc-f")] == "stale"


def test_suspended_device_is_busy() -> None:
    host = Host()
    ns_dev, _ = host.namespace(f"{LONGHORN_NQN_PREFIX}volume-pvc-s")
    host.add_dm("pvc-s", (DmTarget(0, 8, "linear", ns_dev, 0),), suspended=True)
    assert verdicts(plan_of(host))[("dm", "pvc-s")] == "busy"


# ---------------------------------------------------------------- fail closed on host facts


def _backup_node(host: Host) -> tuple[DevNum, str]:
    """A backup initiator's node straight on a Longhorn namespace whose target is alive."""
    dev, ns = host.namespace(f"{LONGHORN_NQN_PREFIX}pvc-b-e-0123abcd")
    host.add_node("pvc-b", dev, OLD)
    return dev, ns


@pytest.mark.parametrize("node_verdict", ["live", "foreign"])
def test_a_node_kept_on_a_namespace_keeps_its_subsystem(node_verdict: str) -> None:
    """A backup initiator's node made a second ago (live: the grace period), or excluded by name
    (foreign), would dangle from a disconnected subsystem: the subsystem is kept with it."""
    host = Host()
    nqn = f"{LONGHORN_NQN_PREFIX}pvc-b-e-0123abcd"
    dev, ns = host.namespace(nqn)
    host.add_node("pvc-b-bk", dev, NOW_NS - SECOND if node_verdict == "live" else OLD)
    config = replace(CONFIG, sweep_grace_period=60.0,
                     sweep_exclude=("*-bk",) if node_verdict == "foreign" else ())
    plan = plan_of(host, config=config)
    assert verdicts(plan)[("node", "pvc-b-bk")] == node_verdict
    subsystem = next(e for e in plan.entries if e.name == nqn)
    assert subsystem.verdict.value == "busy", subsystem.reason
    assert f"{ns} has /dev/longhorn/pvc-b-bk ({node_verdict})" in subsystem.reason


def test_a_backup_node_open_by_a_process_is_busy_naming_the_pid() -> None:
    host = Host()
    dev, _ = _backup_node(host)
    host.openers.append(Opener(dev, 4321, "dd"))
    plan = plan_of(host)
    v = verdicts(plan)
    assert v[("node", "pvc-b")] == "busy" and v[("nvme", f"{LONGHORN_NQN_PREFIX}pvc-b-e-0123abcd")] == "busy"
    assert all("is open by pid 4321 (dd)" in e.reason for e in plan.entries)
    host.openers.clear()
    assert {e.verdict.value for e in plan_of(host).entries} == {"stale"}


def test_a_device_backing_a_loop_device_is_busy_and_an_unresolved_backing_is_unknown() -> None:
    host = Host()
    dev, _ = _backup_node(host)
    host.loops.append(LoopDevice("loop3", "/dev/longhorn/pvc-b", dev))
    assert "backs loop device loop3" in plan_of(host).entries[0].reason
    host.loops[0] = LoopDevice("loop3", "/dev/longhorn/pvc-b (deleted)", None)
    plan = plan_of(host)
    assert plan.removals == ()
    assert all("backing file of loop3" in e.reason and e.verdict.value == "unknown" for e in plan.entries)


def test_unknown_mounts_or_openers_leave_every_would_be_stale_entry_unknown() -> None:
    for fact in ("mounts", "openers", "loops"):
        host = Host()
        host.add_volume("pvc-1", ctime_ns=OLD)
        _backup_node(host)
        host.unknown[fact] = f"{fact} unknown: /proc/1/mountinfo: permission denied"
        plan = plan_of(host)
        assert plan.removals == (), fact
        for entry in plan.entries:
            if entry.name == f"{LONGHORN_NQN_PREFIX}volume-pvc-1":  # held by dm pvc-1, itself unknown
                assert entry.verdict.value == "busy" and "held by dm-0 (unknown)" in entry.reason
            else:
                assert entry.verdict.value == "unknown" and "permission denied" in entry.reason


def test_unknown_dev_longhorn_leaves_longhorn_entries_unknown() -> None:
    host = Host()
    host.add_volume("pvc-1", ctime_ns=OLD, node=False)
    host.unknown["nodes"] = "/dev/longhorn: cannot open: Permission denied"
    plan = plan_of(host)
    assert plan.removals == ()
    assert {e.verdict.value for e in plan.entries} == {"unknown"}
    assert all("/dev/longhorn unknown" in e.reason for e in plan.entries)


def test_unknown_holders_or_open_count_make_the_device_unknown() -> None:
    host = Host()
    dm = host.add_volume("pvc-1", ctime_ns=OLD, node=False)
    host.dm[0] = DmDevice(dm.name, dm.dev, "", False, dm.targets, None, False, ())
    assert "open count could not be read" in plan_of(host).entries[0].reason
    host.dm[0] = DmDevice(dm.name, dm.dev, "", False, dm.targets, 0, False, None)
    plan = plan_of(host)
    assert plan.entries[0].verdict.value == "unknown" and "holders/" in plan.entries[0].reason
    assert plan.removals == ()


def test_names_that_are_not_longhorn_shaped_never_become_paths() -> None:
    host = Host()
    host.namespace(f"{LONGHORN_NQN_PREFIX}volume-/../../x")
    dev, _ = host.namespace(f"{LONGHORN_NQN_PREFIX}volume-ok")
    host.add_dm("Bad Name", (DmTarget(0, 8, "linear", dev, 0),))
    plan = plan_of(host)
    v = verdicts(plan)
    assert v[("nvme", f"{LONGHORN_NQN_PREFIX}volume-/../../x")] == "foreign"
    assert v[("dm", "Bad Name")] == "foreign"


def test_unknown_dev_longhorn_leaves_a_device_whose_backing_is_gone_unknown() -> None:
    """Fail closed: with /dev/longhorn unreadable, the node that could prove ownership is unknown."""
    host = Host()
    host.add_dm("pvc-gone", (DmTarget(0, 8, "linear", DevNum(259, 99), 0),))
    host.unknown["nodes"] = "/dev/longhorn: cannot open: Permission denied"
    entry = plan_of(host).entries[0]
    assert entry.verdict.value == "unknown" and "backing 259:99 is gone" in entry.reason
