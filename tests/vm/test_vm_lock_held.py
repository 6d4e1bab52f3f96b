"""Longhorn's per-volume lock held by another process on a real kernel: skipped, then swept."""

from __future__ import annotations

import pytest

from lhsweep.journal import Event
from tests.vm.checks import devices, events, guest_passed, removed, volume_devices, volume_swept
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="lock_held", timeout=240, deb=True)
VOLUME = "pvc-locked"
LOCK = f"/run/longhorn/spdk-{VOLUME}.lock"  # as lhsweep names it (/var/run links to /run)


def test_skipped_while_locked(vm_scenario: ScenarioResult) -> None:
    """While the lock is held: present after several sweeps, each skipping it for the lock."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    assert volume_devices(VOLUME) <= devices(facts["locked"])
    assert facts["removed_while_locked"] == []
    skips = events(
        vm_scenario, Event.DECISION, LHSWEEP_DEVICE=VOLUME, LHSWEEP_KIND="dm", LHSWEEP_RESULT="skipped"
    )
    assert len(skips) >= 3
    assert all(f"{LOCK} is held by another process" in e["LHSWEEP_REASON"] for e in skips)


def test_swept_once_released(vm_scenario: ScenarioResult) -> None:
    """After the holder exits, the dm device and then the node are removed."""
    guest_passed(vm_scenario)
    assert volume_swept(removed(vm_scenario, VOLUME), VOLUME)
    assert not volume_devices(VOLUME) & devices(vm_scenario.facts["after"])
