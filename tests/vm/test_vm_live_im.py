"""A running instance-manager's volumes on a real kernel: untouched across sweeps, while the crashed
previous instance-manager's leftover is removed."""

from __future__ import annotations

import pytest

from lhsweep.journal import Event
from tests.vm.checks import devices, events, guest_passed, removed, volume_devices
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="live_im", timeout=300, deb=True)
KEPT = ("pvc-live", "pvc-young")


def test_live_volumes_untouched(vm_scenario: ScenarioResult) -> None:
    """pvc-live and pvc-young keep their dm device and node; pvc-live's controller stays live."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    for name in KEPT:
        assert volume_devices(name) <= devices(facts["after"])
    assert "live" in facts["controllers_after"].values()
    assert facts["read_back"] is True


def test_old_leftover_removed_and_nothing_else(vm_scenario: ScenarioResult) -> None:
    """The only removals are pvc-old's; several sweeps ran after it, each removing nothing."""
    guest_passed(vm_scenario)
    assert set(removed(vm_scenario)) == {("dm", "pvc-old"), ("node", "pvc-old")}
    sweeps = vm_scenario.facts["sweeps"]
    assert len(sweeps) == 4 and all(s["counts"]["removed"] == 0 for s in sweeps)
    assert all(s["counts"]["live"] >= 4 for s in sweeps)  # dm and node of both kept volumes
    assert {t for s in sweeps for t in s["triggers"]} >= {"reload", "pod-dir"}


def test_journal_says_why_they_are_live(vm_scenario: ScenarioResult) -> None:
    """DECISION entries give pvc-live (backing present) and pvc-young (made after it started) as live."""
    guest_passed(vm_scenario)
    reasons = {
        e["LHSWEEP_DEVICE"]: e["LHSWEEP_REASON"]
        for e in events(vm_scenario, Event.DECISION, LHSWEEP_KIND="dm", LHSWEEP_VERDICT="live")
    }
    assert "is running and may own it" in reasons["pvc-live"]
    assert "made after instance-manager" in reasons["pvc-young"]
