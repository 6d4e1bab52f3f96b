"""An encrypted V2 volume's leftovers on a real kernel: `<vol>-encrypted` removed before `<vol>`."""

from __future__ import annotations

import pytest

from tests.vm.checks import devices, guest_passed, removed
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="encrypted_v2", timeout=240, deb=True)
VOLUME = "pvc-enc"


def test_child_first(vm_scenario: ScenarioResult) -> None:
    """Journal order: crypt child, linear parent, node, then the NVMe controller."""
    guest_passed(vm_scenario)
    kinds = [(kind, name if kind != "nvme" else "nqn") for kind, name in removed(vm_scenario, VOLUME)]
    assert kinds == [("dm", f"{VOLUME}-encrypted"), ("dm", VOLUME), ("node", VOLUME), ("nvme", "nqn")]


def test_all_gone(vm_scenario: ScenarioResult) -> None:
    """Before: both dm devices and the node; after: none of them, and no Longhorn NQN for it."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    mine = {f"dm:{VOLUME}", f"dm:{VOLUME}-encrypted", f"node:{VOLUME}"}
    assert mine <= devices(facts["before"])
    assert not mine & devices(facts["after"])
    assert not [nqn for nqn in facts["after"]["nvme"] if VOLUME in nqn]
