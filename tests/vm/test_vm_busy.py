"""A mounted stale volume on a real kernel: reported busy with its holder, removed after umount."""

from __future__ import annotations

import pytest

from lhsweep.journal import Event
from tests.vm.checks import devices, events, guest_passed, removed, volume_devices, volume_swept
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="busy", timeout=240, deb=True)
VOLUME = "pvc-busy"


def test_left_alone_while_mounted(vm_scenario: ScenarioResult) -> None:
    """While mounted: present after several sweeps, no REMOVED entry, `lhsweep status` lists it busy."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    assert volume_devices(VOLUME) <= devices(facts["mounted"])
    assert facts["removed_while_mounted"] == []
    assert f"busy: dm {VOLUME}" in facts["status_while_mounted"]


def test_busy_entry_names_the_holder(vm_scenario: ScenarioResult) -> None:
    """The BUSY entries carry LHSWEEP_HOLDER naming the mount point, one per sweep while mounted."""
    guest_passed(vm_scenario)
    busy = events(vm_scenario, Event.BUSY, LHSWEEP_DEVICE=VOLUME, LHSWEEP_KIND="dm")
    assert len(busy) >= 3
    assert all(f"mounted on {vm_scenario.facts['mount_point']}" in e["LHSWEEP_HOLDER"] for e in busy)


def test_removed_after_umount(vm_scenario: ScenarioResult) -> None:
    """After umount the dm device, then the node, are removed."""
    guest_passed(vm_scenario)
    assert volume_swept(removed(vm_scenario, VOLUME), VOLUME)
    assert not volume_devices(VOLUME) & devices(vm_scenario.facts["after"])
