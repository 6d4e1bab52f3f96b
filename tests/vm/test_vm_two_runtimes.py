"""Two CRI runtimes on a real node: lhsweep asks kubelet's only; the live instance-manager's volume
stays while kubelet's runtime does not answer, and is swept once that instance-manager crashed."""

from __future__ import annotations

import pytest

from tests.vm.checks import devices, guest_passed, removed, volume_devices, volume_swept
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="two_runtimes", timeout=420, deb=True)
VOLUME = "pvc-twort"
KUBELETS = "unix:///run/containerd/containerd.sock"
WHY = "kubelet's runtime: containerRuntimeEndpoint in /var/lib/kubelet/config.yaml"


def test_kubelets_runtime_is_used_and_says_why(vm_scenario: ScenarioResult) -> None:
    """With both runtimes answering, the one kubelet names is asked, and scan says so."""
    guest_passed(vm_scenario)
    runtime = vm_scenario.facts["both_answering"]["runtime"]
    assert (runtime["state"], runtime["endpoint"]) == ("known", KUBELETS)
    assert runtime["endpoint_reason"].startswith(WHY)
    assert [im["alive"] for im in runtime["instance_managers"]] == [True]
    assert f"via {KUBELETS} ({WHY}" in vm_scenario.facts["scan_both"]


def test_nothing_removed_while_kubelets_runtime_does_not_answer(vm_scenario: ScenarioResult) -> None:
    """SIGSTOPped kubelet's containerd: unknown (timeout), never the other runtime's empty answer."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    for sweep in facts["while_frozen"]:
        assert sweep["runtime"]["state"] == "unknown"
        assert "Version: timeout" in sweep["runtime"]["reason"]
        assert sweep["counts"]["removed"] == 0
    assert "runtime: unknown" in facts["scan_frozen"]
    assert volume_devices(VOLUME) <= devices(facts["frozen"])
    assert facts["removed_while_alive"] == []
    assert facts["thawed"]["runtime"]["state"] == "known"
    assert facts["thawed"]["counts"]["removed"] == 0


def test_swept_once_the_instance_manager_crashed(vm_scenario: ScenarioResult) -> None:
    """With kubelet's runtime answering again, the crashed instance-manager's leftover goes."""
    guest_passed(vm_scenario)
    assert volume_swept(removed(vm_scenario, VOLUME), VOLUME)
    assert not volume_devices(VOLUME) & devices(vm_scenario.facts["after"])
    assert vm_scenario.facts["after_crash"]["runtime"]["endpoint"] == KUBELETS
