"""lhsweep --host-root run like a container: locks on the host's /run through var/run -> /run."""

from __future__ import annotations

import pytest

from tests.vm.checks import guest_passed
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="host_root_link", timeout=420, deb=True)
VOLUME = "pvc-hostroot"
LOCK = f"/run/longhorn/spdk-{VOLUME}.lock"


def test_the_hosts_lock_is_found_through_the_absolute_link(vm_scenario: ScenarioResult) -> None:
    """var/run is absolute; the held lock on the host's /run/longhorn made every removal skip."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    assert facts["var_run"] == "/run"
    actions = facts["locked"]["actions"]
    assert actions and all(a["result"] == "skipped" for a in actions)
    assert any(f"Longhorn lock {LOCK} is held" in a["detail"] for a in actions)
    assert {a["result"] for a in facts["released"]["actions"]} == {"removed"}


def test_without_the_hosts_proc_nothing_is_stale(vm_scenario: ScenarioResult) -> None:
    """No /proc below the root: mounts and open files unknown, the volume's entries unknown."""
    guest_passed(vm_scenario)
    entries = [e for e in vm_scenario.facts["no_proc"]["entries"] if e.get("volume") == VOLUME]
    assert entries and {e["verdict"] for e in entries} == {"unknown"}
    assert all("mounts unknown" in e["reason"] for e in entries)
