"""A boot sweep whose every removal hangs does not hold up `systemctl start` (READY at the plan)."""

from __future__ import annotations

import pytest

from lhsweep.journal import Event
from tests.vm.checks import devices, events, guest_passed, removed, volume_devices
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="start_bound", timeout=600, deb=True)
NAMES = [f"pvc-slow-{n}" for n in range(4)]
START_BOUND_S = 60.0


def test_start_returns_within_the_bound(vm_scenario: ScenarioResult) -> None:
    """`systemctl start` returned within 60 s (the removals need 4 x 30 s), active, early."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    assert facts["start_s"] <= START_BOUND_S
    assert facts["active_state"] == "active" and facts["unit"]["NRestarts"] == "0"
    assert facts["state_at_ready"] is False  # READY came before the boot sweep's end
    assert facts["entered"] and facts["entered"][0] == NAMES[0]


def test_hung_removals_reported_then_done_once(vm_scenario: ScenarioResult) -> None:
    """Each timed-out removal is a FAILED entry; once dmsetup works, each device is removed once."""
    guest_passed(vm_scenario)
    failed = events(vm_scenario, Event.FAILED, LHSWEEP_KIND="dm")
    assert failed and "timed out" in failed[0]["LHSWEEP_REASON"]
    got = [d for k, d in removed(vm_scenario) if k == "dm"]
    assert sorted(got) == NAMES
    for name in NAMES:
        assert not volume_devices(name) & devices(vm_scenario.facts["after"])
