"""A backup node held open by another user's process, its target alive: busy naming the pid, swept after."""

from __future__ import annotations

import pytest

from lhsweep.journal import Event
from tests.vm.checks import events, guest_passed
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="held_open", timeout=240, deb=True)
BACKUP = "pvc-backup-open"


def test_left_alone_while_open_and_the_reader_is_named(vm_scenario: ScenarioResult) -> None:
    """BUSY entries name the reader's pid and command; neither the node nor the controller went."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    assert facts["removed_while_open"] == []
    assert BACKUP in facts["held"]["longhorn"] and facts["nqn"] in facts["held"]["nvme"]
    busy = events(vm_scenario, Event.BUSY, LHSWEEP_DEVICE=BACKUP, LHSWEEP_KIND="node")
    assert len(busy) >= 3
    assert all(f"is open by pid {facts['reader_pid']} (sleep)" in e["LHSWEEP_HOLDER"] for e in busy)


def test_swept_once_the_reader_exits(vm_scenario: ScenarioResult) -> None:
    """After the reader is killed the node, then the controller, are removed."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    kinds = [(e["LHSWEEP_KIND"], e["LHSWEEP_DEVICE"]) for e in events(vm_scenario, Event.REMOVED)
             if e["LHSWEEP_DEVICE"] in (BACKUP, facts["nqn"])]
    assert kinds == [("node", BACKUP), ("nvme", facts["nqn"])]
    assert BACKUP not in facts["after"]["longhorn"]
