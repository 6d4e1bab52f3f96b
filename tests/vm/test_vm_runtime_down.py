"""containerd stopped on a real kernel: nothing removed, status unknown; started again: swept."""

from __future__ import annotations

import pytest

from lhsweep.journal import Event
from tests.vm.checks import devices, events, guest_passed, removed, volume_devices, volume_swept
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="runtime_down", timeout=300, deb=True)
VOLUME = "pvc-rtdown"


def test_nothing_removed_while_down(vm_scenario: ScenarioResult) -> None:
    """Sweeps while containerd is down see an unknown runtime and remove nothing."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    assert volume_devices(VOLUME) <= devices(facts["while_down"])
    assert facts["removed_while_down"] == []
    assert all(
        s["runtime"]["state"] == "unknown" and s["counts"]["removed"] == 0 for s in facts["sweeps_while_down"]
    )
    assert "runtime: unknown" in facts["status_while_down"]
    assert events(vm_scenario, Event.RUNTIME_UNKNOWN)


def test_swept_when_containerd_is_back(vm_scenario: ScenarioResult) -> None:
    """Once containerd answers again, the daemon removes the leftover by itself."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    assert volume_swept(removed(vm_scenario, VOLUME), VOLUME)
    assert not volume_devices(VOLUME) & devices(facts["after"])
    assert "runtime: known" in facts["status_after"]
