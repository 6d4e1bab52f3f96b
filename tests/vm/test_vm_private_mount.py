"""A backup node mounted only in a private mount namespace: busy naming mount and namespace, swept after."""

from __future__ import annotations

import pytest

from lhsweep.journal import Event
from tests.vm.checks import events, guest_passed
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="private_mount", timeout=240, deb=True)
BACKUP = "pvc-backup-priv"


def test_left_alone_while_mounted_in_another_namespace(vm_scenario: ScenarioResult) -> None:
    """The mount is absent from PID 1's mountinfo, yet the BUSY entries name it and its namespace."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    assert facts["in_pid1_mountinfo"] is False
    assert facts["removed_while_mounted"] == []
    busy = events(vm_scenario, Event.BUSY, LHSWEEP_DEVICE=BACKUP, LHSWEEP_KIND="node")
    assert len(busy) >= 3
    named = f"mounted on /mnt/lhvm-private in the mount namespace of pid {facts['holder_pid']} (sleep)"
    assert all(named in e["LHSWEEP_HOLDER"] for e in busy)


def test_swept_once_the_namespace_is_gone(vm_scenario: ScenarioResult) -> None:
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    kinds = [(e["LHSWEEP_KIND"], e["LHSWEEP_DEVICE"]) for e in events(vm_scenario, Event.REMOVED)
             if e["LHSWEEP_DEVICE"] in (BACKUP, facts["nqn"])]
    assert kinds == [("node", BACKUP), ("nvme", facts["nqn"])]
