"""A NOTREADY sandbox with a running instance-manager container on a real node: alive, nothing
removed; swept once the container crashed too."""

from __future__ import annotations

import pytest

from tests.vm.checks import devices, guest_passed, removed, volume_devices, volume_swept
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="notready_sandbox", timeout=360, deb=True)
VOLUME = "pvc-notready"


def test_running_container_in_a_notready_sandbox_keeps_its_volume(vm_scenario: ScenarioResult) -> None:
    """The sandbox is NOTREADY, the container runs: the instance-manager is alive, nothing removed."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    assert (facts["sandbox_state"], facts["container_state"]) == ("notready", "running")
    for sweep in facts["sweeps"]:
        assert sweep["runtime"]["state"] == "known"
        [im] = sweep["runtime"]["instance_managers"]
        assert (im["sandbox_state"], im["container_state"], im["alive"]) == ("notready", "running", True)
        assert sweep["counts"]["removed"] == 0
    assert volume_devices(VOLUME) <= devices(facts["kept"])
    assert facts["removed_while_running"] == []
    assert "sandbox notready, container running" in facts["scan"]


def test_swept_once_the_container_crashed(vm_scenario: ScenarioResult) -> None:
    """The container dies too: the leftover is removed by the daemon on its own."""
    guest_passed(vm_scenario)
    assert volume_swept(removed(vm_scenario, VOLUME), VOLUME)
    assert not volume_devices(VOLUME) & devices(vm_scenario.facts["after"])
