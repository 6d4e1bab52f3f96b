"""Foreign dm devices on a real kernel (LVM, plain linear, Longhorn-shaped linear on a loop, linear over
a non-Longhorn NVMe subsystem): untouched while a V2 leftover is removed."""

from __future__ import annotations

import pytest

from tests.vm.checks import guest_passed, removed
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="foreign", timeout=240, deb=True)
OTHER_NQN = "nqn.2014-08.org.lhvm:foreign-disk"


def test_foreign_devices_stay(vm_scenario: ScenarioResult) -> None:
    """Every foreign dm device is still listed by dmsetup, and the foreign controller is live."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    assert set(facts["foreign"]) == {"lhvmvg-data", "plain-linear", "pvc-lookalike", "pvc-othernqn"}
    assert set(facts["foreign"]) <= set(facts["after"]["dm"])
    assert OTHER_NQN in facts["after"]["nvme"] and "live" in facts["other_controllers"].values()


def test_only_the_v2_leftover_removed(vm_scenario: ScenarioResult) -> None:
    """The journal's removals are pvc-fctl's dm device, node (and controller) only."""
    guest_passed(vm_scenario)
    everything = removed(vm_scenario)
    assert everything == removed(vm_scenario, "pvc-fctl")  # nothing but the control volume's objects
    assert everything[:2] == [("dm", "pvc-fctl"), ("node", "pvc-fctl")]
