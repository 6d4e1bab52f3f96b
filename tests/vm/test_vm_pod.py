"""lhsweep in the DaemonSet's pod on a real kernel and a real containerd: the image imported with
`ctr images import`, the pod spec of deploy/kubernetes run through CRI as kubelet would, and the
service scenarios (seed crash, live instance-manager, V1 encrypted, busy, Longhorn's lock held)
with the same outcomes as the host service. Needs `make image` and `make deb`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lhsweep.journal import Event
from tests.vm.checks import devices, volume_devices, volume_swept
from tests.vm.harness import ScenarioResult


def pod_scenario(name: str) -> pytest.MarkDecorator:
    """The `vm` marker of a scenario that runs the pod: the .deb (for the guest's test helpers and
    `lhsweep` on the host) and the image with the DaemonSet's pod spec on the payload."""
    return pytest.mark.vm(scenario=name, timeout=1200, deb=True, image=True)


def shown(result: ScenarioResult) -> dict[str, Any]:
    """What the pod showed at the end of the scenario (lhvm/pod.py's record)."""
    path = result.directory / "pod.json"
    assert path.exists(), result.describe()
    data: dict[str, Any] = json.loads(path.read_text())
    assert "record_error" not in data, data["record_error"]
    return data


def pod_events(result: ScenarioResult, event: Event, **fields: str) -> list[dict[str, Any]]:
    """The pod's log lines of kind `event` with `fields`."""
    return [e for e in shown(result)["entries"] if e.get("MESSAGE_ID") == event.value
            and all(e.get(k) == v for k, v in fields.items())]


def pod_removed(result: ScenarioResult) -> list[tuple[str, str]]:
    """(kind, device) of every removal the pod logged, in order."""
    return [(e["LHSWEEP_KIND"], e["LHSWEEP_DEVICE"]) for e in pod_events(result, Event.REMOVED)]


def assert_pod_healthy(result: ScenarioResult) -> None:
    """The scenario's own checks held; the container runs, both probes answer 200, /metrics serves."""
    assert result.passed, result.describe()
    pod = shown(result)
    assert pod["state"] == "active"
    assert pod["healthz"][0] == 200 and pod["readyz"][0] == 200
    assert pod["metrics"][0] == 200 and "lhsweep_sweeps_total" in pod["metrics"][1]


@pod_scenario("pod_seed")
def test_seed_crash_swept_by_the_pod(vm_scenario: ScenarioResult) -> None:
    assert_pod_healthy(vm_scenario)
    facts = vm_scenario.facts
    assert not volume_devices("pvc-seed") & devices(facts["after"])
    assert not [nqn for nqn in facts["after"]["nvme"] if "pvc-seed" in nqn]
    assert ("dm", "pvc-seed") in pod_removed(vm_scenario)
    assert 'lhsweep_removals_total{kind="dm"} 1.0' in shown(vm_scenario)["metrics"][1]
    # Longhorn's lock was taken on the host's /run/longhorn, not in the pod's own tree.
    assert "spdk-pvc-seed.lock" in shown(vm_scenario)["lock_dir"]


@pod_scenario("pod_live_im")
def test_live_instance_manager_volumes_untouched_by_the_pod(vm_scenario: ScenarioResult) -> None:
    assert_pod_healthy(vm_scenario)
    assert set(pod_removed(vm_scenario)) == {("dm", "pvc-old"), ("node", "pvc-old")}
    for name in ("pvc-live", "pvc-young"):
        assert volume_devices(name) <= devices(vm_scenario.facts["after"])


@pod_scenario("pod_v1_encrypted")
def test_v1_encrypted_volumes_untouched_by_the_pod(vm_scenario: ScenarioResult) -> None:
    assert_pod_healthy(vm_scenario)
    removed = pod_removed(vm_scenario)
    # The control volume's dm device and node; its controller too unless ctrl_loss_tmo beat lhsweep.
    assert {(k, d) for k, d in removed if k != "nvme"} == {("dm", "pvc-v1ctl"), ("node", "pvc-v1ctl")}
    assert all(d.startswith("nqn.2023-01.io.longhorn.spdk:pvc-v1ctl-") for k, d in removed if k == "nvme")
    foreign = pod_events(vm_scenario, Event.DECISION, LHSWEEP_KIND="dm", LHSWEEP_VERDICT="foreign")
    assert {e["LHSWEEP_DEVICE"] for e in foreign} >= {"pvc-v1enc", "pvc-v1node"}


@pod_scenario("pod_busy")
def test_busy_volume_left_alone_by_the_pod_until_unmounted(vm_scenario: ScenarioResult) -> None:
    assert_pod_healthy(vm_scenario)
    busy = pod_events(vm_scenario, Event.BUSY, LHSWEEP_DEVICE="pvc-busy", LHSWEEP_KIND="dm")
    assert busy and all(f"mounted on {vm_scenario.facts['mount_point']}" in e["LHSWEEP_HOLDER"]
                        for e in busy)
    assert volume_swept(pod_removed(vm_scenario), "pvc-busy")


@pod_scenario("pod_lock_held")
def test_longhorn_lock_on_the_host_is_respected_by_the_pod(vm_scenario: ScenarioResult) -> None:
    assert_pod_healthy(vm_scenario)
    skips = pod_events(vm_scenario, Event.DECISION, LHSWEEP_DEVICE="pvc-locked", LHSWEEP_KIND="dm",
                       LHSWEEP_RESULT="skipped")
    assert skips and all("is held by another process" in e["LHSWEEP_REASON"] for e in skips)
    assert volume_swept(pod_removed(vm_scenario), "pvc-locked")
