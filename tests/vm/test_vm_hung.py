"""A removal hung in the kernel (D state) on a real kernel: the service is not wedged."""

from __future__ import annotations

import pytest

from lhsweep.journal import Event
from tests.vm.checks import devices, events, guest_passed, removed, volume_devices, watchdog_kept
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="hung", timeout=360, deb=True)
VOLUME = "pvc-hung"


def test_reported_stuck_not_waited_on(vm_scenario: ScenarioResult) -> None:
    """The hung dmsetup is reported STUCK (abandoned after SIGKILL) and was really in D state."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    stuck = events(vm_scenario, Event.STUCK, LHSWEEP_DEVICE=VOLUME, LHSWEEP_KIND="dm")
    assert stuck and "abandoned" in stuck[0]["LHSWEEP_REASON"]
    assert facts["stuck_process"] == ["dd D"]
    assert [s["argv"] for s in facts["stuck_in_state"]] == [["dmsetup", "remove", "--", VOLUME]]


def test_watchdog_did_not_fire(vm_scenario: ScenarioResult) -> None:
    """Over a minute with the action hung: no watchdog timeout, no restart, same main process."""
    guest_passed(vm_scenario)
    watchdog_kept(vm_scenario)


def test_later_sweeps_still_run(vm_scenario: ScenarioResult) -> None:
    """A later crash's leftovers are removed while the hang lasts; pvc-hung once it is released."""
    guest_passed(vm_scenario)
    order = removed(vm_scenario)
    assert ("dm", "pvc-later") in order and ("dm", VOLUME) in order
    assert order.index(("dm", "pvc-later")) < order.index(("dm", VOLUME))
    assert not volume_devices(VOLUME) & devices(vm_scenario.facts["after"])
