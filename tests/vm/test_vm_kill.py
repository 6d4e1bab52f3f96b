"""SIGKILL in the middle of a sweep on a real kernel: the journal accounts for every removal once."""

from __future__ import annotations

import pytest

from tests.vm.checks import guest_passed
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="kill", timeout=480, deb=True)
NAMES = [f"pvc-kill-{c}" for c in "abcd"]


def test_every_removal_journaled_once_across_the_kill(vm_scenario: ScenarioResult) -> None:
    """Two dm devices removed (and journaled) by the killed daemon, the rest by its successor."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    killed, restarted = facts["killed_pid"], facts["restarted_pid"]
    assert killed != restarted and facts["n_restarts"] == "1"
    assert facts["removed_before_kill"] == [["dm", NAMES[0]], ["dm", NAMES[1]]]
    by_pid = {(r["kind"], r["device"]): r["pid"] for r in facts["removed"]}
    assert len(by_pid) == len(facts["removed"]) == 2 * len(NAMES)  # exactly once each
    assert {k for k, pid in by_pid.items() if pid == killed} == {("dm", NAMES[0]), ("dm", NAMES[1])}
    assert all(pid == restarted for k, pid in by_pid.items() if k not in
               {("dm", NAMES[0]), ("dm", NAMES[1])})
    assert all("no V2 instance-manager" in r["verdict_reason"] for r in facts["removed"])


def test_nothing_else_touched(vm_scenario: ScenarioResult) -> None:
    """The foreign dm device made beside the leftovers is still there."""
    guest_passed(vm_scenario)
    assert "plain-kill" in vm_scenario.facts["after"]["dm"]
    assert set(vm_scenario.facts["before"]["dm"]) - set(vm_scenario.facts["after"]["dm"]) == set(NAMES)
