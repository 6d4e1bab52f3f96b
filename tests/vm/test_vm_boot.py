"""Boot sweep on a real kernel: leftovers present when lhsweep starts are removed by its boot sweep."""

from __future__ import annotations

import pytest

from tests.vm.checks import devices, guest_passed, removed, volume_devices
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="boot", timeout=240, deb=True)
GONE, CONNECTING = "pvc-boot-gone", "pvc-boot-conn"
CONNECTING_NQN = "nqn.2023-01.io.longhorn.spdk:volume-pvc-boot-conn"
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"  # systemd's catalog: a unit finished starting


def test_leftovers_gone_after_the_boot_sweep(vm_scenario: ScenarioResult) -> None:
    """Both volumes' dm devices and nodes and the reconnecting controller are gone once it ends."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    assert volume_devices(GONE) | volume_devices(CONNECTING) <= devices(facts["before"])
    assert facts["connecting_controllers"] and set(facts["connecting_controllers"].values()) <= {
        "connecting",
        "resetting",
    }
    assert not (volume_devices(GONE) | volume_devices(CONNECTING)) & devices(facts["after"])
    assert CONNECTING_NQN not in facts["after"]["nvme"]


def test_udev_drops_the_mapper_links_of_devices_removed_in_process(vm_scenario: ScenarioResult) -> None:
    """After the in-process removals and `udevadm settle`, /dev/mapper has no link of either volume."""
    guest_passed(vm_scenario)
    assert "control" in vm_scenario.facts["mapper_after"]
    assert not {GONE, CONNECTING} & set(vm_scenario.facts["mapper_after"])


def test_boot_sweep_logged_once_per_removal(vm_scenario: ScenarioResult) -> None:
    """Every removal of the boot sweep is journaled once, by the daemon systemd started."""
    guest_passed(vm_scenario)
    got = removed(vm_scenario)
    assert len(got) == len(set(got))
    must = {("dm", GONE), ("node", GONE), ("dm", CONNECTING), ("node", CONNECTING)}
    # The reconnecting controller is lhsweep's to disconnect unless its 30 s ctrl_loss_tmo ran
    # out first (seen once on a heavily loaded host: the guest took 174 s to boot).
    assert must <= set(got) <= must | {("nvme", CONNECTING_NQN)}
    journal = vm_scenario.journal()  # in journal order
    started = [
        i
        for i, e in enumerate(journal)
        if e.get("MESSAGE_ID") == UNIT_STARTED and e.get("UNIT") == "lhsweep.service"
    ]
    assert len(started) == 1, started
