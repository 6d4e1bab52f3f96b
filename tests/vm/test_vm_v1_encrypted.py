"""V1 encrypted volumes on a real kernel (dm-crypt `<vol>` beside /dev/longhorn/<vol>): untouched."""

from __future__ import annotations

import pytest

from lhsweep.journal import Event
from tests.vm.checks import devices, events, guest_passed, removed, volume_devices
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="v1_encrypted", timeout=240, deb=True)
V1 = ("pvc-v1enc", "pvc-v1node")


def test_v1_crypt_devices_and_nodes_stay(vm_scenario: ScenarioResult) -> None:
    """Both crypt devices and their nodes exist and are active after the sweeps."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    for name in V1:
        assert volume_devices(name) <= devices(facts["after"])
    assert facts["crypt_status"] == {name: 0 for name in V1}


def test_only_the_v2_leftover_removed(vm_scenario: ScenarioResult) -> None:
    """The journal removes pvc-v1ctl's dm device, node (and controller), nothing of the V1 volumes."""
    guest_passed(vm_scenario)
    everything = removed(vm_scenario)
    assert everything == removed(vm_scenario, "pvc-v1ctl")  # nothing but the control volume's objects
    assert everything[:2] == [("dm", "pvc-v1ctl"), ("node", "pvc-v1ctl")]
    assert not volume_devices("pvc-v1ctl") & devices(vm_scenario.facts["after"])


def test_v1_devices_judged_foreign(vm_scenario: ScenarioResult) -> None:
    """The journal names the crypt devices foreign, for their crypt table."""
    guest_passed(vm_scenario)
    foreign = events(vm_scenario, Event.DECISION, LHSWEEP_KIND="dm", LHSWEEP_VERDICT="foreign")
    reasons = {e["LHSWEEP_DEVICE"]: e["LHSWEEP_REASON"] for e in foreign}
    for name in V1:
        assert "crypt" in reasons[name], reasons
