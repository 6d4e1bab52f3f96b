"""Smoke test on a real kernel: the guest boots, Longhorn V2 devices and an instance-manager pod are
made for real, and a crash leaves exactly the leftovers docs/design.md describes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.vm.harness import REPO, ScenarioResult

NQN_PREFIX = "nqn.2023-01.io.longhorn.spdk:"
VOLUME = "pvc-smoke"
LAYOUT_DIR = REPO / ".cache" / "vm" / "layout"

pytestmark = pytest.mark.vm(scenario="smoke", timeout=300)


def test_guest_scenario_passes(vm_scenario: ScenarioResult) -> None:
    """The guest-side checks all held (dm-mod, devices made, pod listed, leftovers after the crash)."""
    assert vm_scenario.passed, vm_scenario.describe()


def test_volume_made_like_go_spdk_helper(vm_scenario: ScenarioResult) -> None:
    """One linear segment over the NVMe namespace head of a Longhorn subsystem, a 0660 root:disk node."""
    facts = vm_scenario.facts
    assert facts["table"] == f"0 131072 linear {facts['namespace']['dev']} 0"
    assert facts["namespace"]["subsysnqn"].startswith(NQN_PREFIX + VOLUME + "-e-")
    assert facts["dm_uuid"] == ""
    attached = facts["attached"]
    assert VOLUME in attached["dm"] and VOLUME in attached["longhorn"]
    assert (
        f"brw-rw---- 1 root disk 253, {facts['devs']['volume'].split(':')[1]}"
        in (attached["listings"]["ls -l /dev/longhorn"])
    )
    assert facts["controllers_attached"] == {"nvme0": "live"}


def test_foreign_devices_beside_it(vm_scenario: ScenarioResult) -> None:
    """V1 crypt named like its node, V2 crypt stacked on the linear, LVM and a plain linear all exist."""
    attached = vm_scenario.facts["attached"]
    assert {"pvc-v1crypt", "pvc-v2enc-encrypted", "lhvmvg-data", "plain-linear"} <= set(attached["dm"])
    assert "pvc-v1crypt" in attached["longhorn"]
    assert vm_scenario.facts["enc_holders"] == [f"dm-{vm_scenario.facts['devs']['v2enc'].split(':')[1]}"]


def test_instance_manager_under_containerd(vm_scenario: ScenarioResult) -> None:
    """CRI lists the pod with Longhorn's labels, running, and reports it exited after SIGKILL."""
    facts = vm_scenario.facts
    assert 'runtime_name: "containerd"' in facts["cri_version"]
    assert len(facts["im_pods"]) == 1 and facts["im_pods"][0].startswith("instance-manager-")
    assert facts["im_container_states"] == {"instance-manager": "running"}
    assert facts["im_state_after_kill"] == "exited"


def test_crash_leaves_design_md_leftovers(vm_scenario: ScenarioResult) -> None:
    """Controller goes connecting then away; head gone, slave link dangling, dm and node unchanged."""
    facts = vm_scenario.facts
    assert facts["controllers_connecting"] == {"nvme0": "connecting"}
    crashed = facts["crashed"]
    assert VOLUME in crashed["dm"] and VOLUME in crashed["longhorn"]
    assert facts["table_after"] == facts["table"]
    assert facts["info_after"] == f"{VOLUME}:L--w:0"
    assert facts["head_dev_exists"] is False
    assert facts["slaves_crashed"] == {facts["namespace"]["name"]: False}
    assert facts["subsystem_dir_after"] is not None
    assert "live" not in crashed["listings"]["nvme list-subsys"]


def test_layout_recorded(vm_scenario: ScenarioResult) -> None:
    """The real sysfs layout was recorded; keep a copy for comparing the hosttree fixture against."""
    LAYOUT_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("layout-attached.txt", "layout-crashed.txt"):
        source: Path = vm_scenario.directory / name
        assert source.exists(), f"{source} missing"
        shutil.copyfile(source, LAYOUT_DIR / name)
    attached = (LAYOUT_DIR / "layout-attached.txt").read_text()
    assert "/dm/uuid = \n" in attached
    assert "/nvme0c0n1/hidden = 1" in attached
