"""lhsweep.sweep without processes: the scan's collector pause, the runtime asked again before acting."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Optional

import pytest

import lhsweep.act
import lhsweep.sweep
from lhsweep.config import Config
from lhsweep.host import HostRoot
from lhsweep.model import (
    ActionResult,
    Entry,
    Identity,
    InstanceManager,
    Inventory,
    Kind,
    Plan,
    RuntimeState,
    RuntimeView,
    SweepReport,
    Verdict,
)
from lhsweep.sweep import CONFIRM_ATTEMPTS, RuntimeConfirmation, collector_paused, run_sweep, scan
from lhsweep.tools import ToolRunner
from tests.inventories import instance_manager, runtime_with

HOUR_NS = 3600 * 10**9


def test_the_collector_is_off_inside_and_back_on_after_even_on_error() -> None:
    inside = []
    with collector_paused():
        inside.append(gc.isenabled())
    assert inside == [False] and gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("the scan failed")
    assert gc.isenabled()


def test_what_was_allocated_while_paused_is_in_the_oldest_generation_after() -> None:
    """No young collection walks the scan's records again once the collector is back on."""
    with collector_paused():
        made = [[] for _ in range(3)]
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert all(id(m) in oldest for m in made) and gc.isenabled()


def test_a_collector_turned_off_by_someone_else_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_scan_reads_the_host_and_plans_with_the_collector_off(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    read = lhsweep.sweep.read_inventory

    def recording(*args: object, **kwargs: object) -> Inventory:
        seen.append(gc.isenabled())
        return read(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lhsweep.sweep, "read_inventory", recording)
    report = scan(Config(), HostRoot(str(tmp_path)), query=lambda _c, _h: runtime_with())
    assert seen == [False] and gc.isenabled()
    assert report.plan.entries == ()


# ---------------------------------------------------------------- the runtime asked again before acting


def sandbox_only(suffix: str) -> InstanceManager:
    """A ready instance-manager sandbox whose container kubelet has not listed yet (alive)."""
    return instance_manager(HOUR_NS, suffix=suffix)._replace(container_id=None, container_state=None)


def sweep_between(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planned: RuntimeView,
                  at_action: RuntimeView) -> tuple[dict[str, str], bool]:
    """run_sweep over a plan of one stale dm device made under `planned`, the runtime answering
    `at_action` when asked again: (detail of each skipped removal by name, whether it acted)."""
    stale = Entry(Kind.DM, "pvc-1", Verdict.STALE, "stale for the test", Identity("pvc-1"))
    monkeypatch.setattr(lhsweep.sweep, "scan", lambda *_a, **_k: SweepReport(planned, Plan((stale,))))
    acted = []

    class Actor:
        def __init__(self, *_args: object, **_kwargs: object) -> None:
            pass

        def execute(self, plan: Plan, dry_run: bool) -> tuple[()]:
            acted.append(plan)
            return ()

    monkeypatch.setattr(lhsweep.act, "Actor", Actor)
    report = run_sweep(Config(state_dir=str(tmp_path / "state")), HostRoot(str(tmp_path)),
                       dry_run=False, runner=ToolRunner(60), query=lambda _c, _h: at_action)
    skipped = {o.name: o.detail for o in report.outcomes if o.result is ActionResult.SKIPPED}
    return skipped, bool(acted)


def test_a_new_sandbox_without_a_container_beside_another_skips_every_removal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both have no container id: only the sandbox tells the new instance-manager b from a.
    skipped, acted = sweep_between(tmp_path, monkeypatch, runtime_with(sandbox_only("a")),
                                   runtime_with(sandbox_only("a"), sandbox_only("b")))
    assert not acted
    assert skipped == {"pvc-1": f"instance-manager {sandbox_only('b').pod_name} started during the "
                                f"sweep; re-planning"}


@pytest.mark.parametrize(("planned", "at_action", "changed"), [
    (None, "b", "b"),                      # a new instance-manager, no container yet
    ("a", "a", None),                      # the same sandbox, still no container
    ("a-with-container", "a-with-container", None),
    ("a", "a-with-container", "a"),        # its container listed since: made after the plan
    ("a-exited", "a-with-container", "a"),  # dead at planning, alive now
])
def test_an_instance_manager_the_plan_did_not_see_alive_is_a_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planned: Optional[str],
        at_action: str, changed: Optional[str]) -> None:
    managers = {"a": sandbox_only("a"), "b": sandbox_only("b"),
                "a-with-container": instance_manager(HOUR_NS, suffix="a"),
                "a-exited": instance_manager(HOUR_NS, suffix="a", running=False)}
    before = runtime_with(*([managers[planned]] if planned else []))
    skipped, acted = sweep_between(tmp_path, monkeypatch, before, runtime_with(managers[at_action]))
    if changed is None:
        assert (skipped, acted) == ({}, True)
    else:
        assert not acted
        assert skipped == {"pvc-1": f"instance-manager {managers[changed].pod_name} started during "
                                    f"the sweep; re-planning"}


def test_a_runtime_unknown_before_acting_skips_every_removal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    skipped, acted = sweep_between(tmp_path, monkeypatch, runtime_with(),
                                   RuntimeView(RuntimeState.UNKNOWN, "CRI timed out"))
    assert not acted
    assert skipped == {"pvc-1": "runtime became unknown before acting: CRI timed out"}


@pytest.mark.parametrize(("kinds", "dry_run", "removal", "started"), [
    ((Kind.DM, Kind.NODE), False, "kernel", True),
    ((Kind.NVME,), False, "kernel", True),
    ((Kind.NODE,), False, "kernel", False),   # node unlinks are done in-process, no helper
    ((Kind.DM,), True, "kernel", False),      # a dry run removes nothing
    ((Kind.DM,), False, "tools", False),      # dmsetup and nvme-cli do the removals
])
def test_the_kernel_call_helper_starts_before_the_runtime_is_asked_again_and_ends_with_the_sweep(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kinds: tuple[Kind, ...], dry_run: bool,
        removal: str, started: bool) -> None:
    stale = tuple(Entry(k, f"pvc-{i}", Verdict.STALE, "stale for the test", Identity(f"pvc-{i}"))
                  for i, k in enumerate(kinds))
    monkeypatch.setattr(lhsweep.sweep, "scan",
                        lambda *_a, **_k: SweepReport(runtime_with(), Plan(stale)))
    runner = ToolRunner(60)
    seen: list[bool] = []

    def query(_config: Config, _host: HostRoot) -> RuntimeView:
        seen.append(runner.helper_running)  # asked again: the helper is already on its way
        return runtime_with()

    monkeypatch.setattr(lhsweep.act, "Actor", _NoActor)
    run_sweep(Config(state_dir=str(tmp_path / "state"), sweep_removal=removal),
              HostRoot(str(tmp_path)), dry_run=dry_run, runner=runner, query=query)
    assert seen == ([] if dry_run else [started])
    assert not runner.helper_running


def test_a_helper_started_for_a_plan_the_runtime_then_contradicts_ends_with_the_sweep(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = Entry(Kind.DM, "pvc-1", Verdict.STALE, "stale for the test", Identity("pvc-1"))
    monkeypatch.setattr(lhsweep.sweep, "scan",
                        lambda *_a, **_k: SweepReport(runtime_with(), Plan((stale,))))
    runner = ToolRunner(60)
    report = run_sweep(Config(state_dir=str(tmp_path / "state")), HostRoot(str(tmp_path)),
                       dry_run=False, runner=runner,
                       query=lambda _c, _h: RuntimeView(RuntimeState.UNKNOWN, "CRI timed out"))
    assert [o.result for o in report.outcomes] == [ActionResult.SKIPPED]
    assert not runner.helper_running


class _NoActor:
    """Stands in for lhsweep.act.Actor: acts on nothing, leaves the helper as it found it."""

    def __init__(self, *_args: object, **_kwargs: object) -> None:
        pass

    def execute(self, _plan: Plan, _dry_run: bool) -> tuple[()]:
        return ()


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_runtime_is_asked_again_before_a_removal_once_its_answer_is_a_second_old(
        dry_run: bool) -> None:
    """Not before every removal (a CRI call each), never on an answer older than RECONFIRM_AFTER_S,
    and not at all in a dry run (it removes nothing)."""
    now = [100.0]
    asked: list[float] = []

    def ask() -> RuntimeView:
        asked.append(now[0])
        return runtime_with()

    confirmed = RuntimeConfirmation(runtime_with(), ask, dry_run, clock=lambda: now[0])
    for at in (100.0, 100.5, 100.75, 101.25, 102.0):
        now[0] = at
        assert confirmed.changed() == ""
    assert asked == ([] if dry_run else [100.0, 101.25])


def test_an_answer_that_took_a_second_to_come_is_too_old_and_asked_again() -> None:
    """Its sandbox list was read at its start: a slow answer is asked for again, and after
    CONFIRM_ATTEMPTS slow ones nothing is removed; a fast one counts from when it was asked for."""
    now = [0.0]
    slowness = [1.5, 0.2]

    def ask() -> RuntimeView:
        now[0] += slowness.pop(0) if slowness else 1.0
        return runtime_with()

    confirmed = RuntimeConfirmation(runtime_with(), ask, False, clock=lambda: now[0])
    assert confirmed.changed() == "" and now[0] == pytest.approx(1.7)
    now[0] = 2.4  # 0.9 s after the fast answer was asked for (at 1.5): still fresh
    assert confirmed.changed() == "" and not slowness
    now[0] = 2.5
    assert confirmed.changed() == (f"the runtime took 1.0s to answer, {CONFIRM_ATTEMPTS} times: "
                                   "an answer that old (over 1s) is not acted on")
    assert now[0] == pytest.approx(2.5 + CONFIRM_ATTEMPTS)


def test_a_runtime_change_seen_once_stops_every_later_removal() -> None:
    """The first answer that differs decides the rest of the sweep; it is not asked again."""
    answers = [runtime_with(instance_manager(5)), runtime_with()]
    now = [0.0]
    confirmed = RuntimeConfirmation(runtime_with(), lambda: answers.pop(0), False, clock=lambda: now[0])
    assert "started during the sweep" in confirmed.changed()
    now[0] += 10.0
    assert "started during the sweep" in confirmed.changed() and len(answers) == 1
