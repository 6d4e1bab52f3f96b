"""lhsweep's own in-process removal (sweep.removal = "kernel") hung in the kernel on a real kernel."""

from __future__ import annotations

import pytest

from lhsweep.journal import Event
from lhsweep.model import LONGHORN_NQN_PREFIX
from tests.vm.checks import devices, events, guest_passed, removed, volume_devices, watchdog_kept
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="hung_kernel", timeout=420, deb=True)
VOLUME = "pvc-hungk"


def test_reported_stuck_in_the_kernel(vm_scenario: ScenarioResult) -> None:
    """dm and node removed, then the delete_controller write is reported STUCK: its helper child was
    abandoned in D state, inside the kernel's controller deletion, waiting on the blocked reconnect."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    nqn = facts["nqn"]
    assert nqn.startswith(LONGHORN_NQN_PREFIX) and "removal" not in facts["config"]
    [ctrl] = facts["controllers_when_stalled"]
    assert facts["controllers_when_stalled"][ctrl] == "connecting"
    assert any("nvmf_connect_admin_queue" in stack for stack in facts["workers_when_stalled"].values())
    stuck = events(vm_scenario, Event.STUCK, LHSWEEP_DEVICE=nqn, LHSWEEP_KIND="nvme")
    assert len(stuck) == 1 and "nvme-delete still running after" in stuck[0]["LHSWEEP_REASON"]
    assert stuck[0]["LHSWEEP_REASON"].endswith("and SIGKILL: abandoned")
    assert removed(vm_scenario, VOLUME)[:2] == [("dm", VOLUME), ("node", VOLUME)]
    dm_removed = events(vm_scenario, Event.REMOVED, LHSWEEP_DEVICE=VOLUME, LHSWEEP_KIND="dm")
    assert dm_removed[0]["LHSWEEP_REASON"] == "dm-remove exited 0"  # the helper's DM_DEV_REMOVE ioctl
    assert [s["argv"] for s in facts["stuck_in_state"]] == [["nvme-delete", nqn, ctrl]]
    assert facts["stuck_process"] == ["python3 D"] == facts["stuck_process_at_end"]
    assert facts["stuck_cmdline"][0][-1].endswith("lhsweep/opshelper.py")
    stack = facts["stuck_stack"][0]  # waiting for the reconnect work, inside the sysfs write
    assert "__flush_work" in stack and "nvme_do_delete_ctrl" in stack and "vfs_write" in stack
    assert any(frame.startswith("nvme_sysfs_delete") for frame in stack)
    assert facts["controllers_when_stuck"] == {ctrl: "deleting"} == facts["controllers_at_end"]
    assert "1 stuck action" in facts["status_while_hung"]
    pid = facts["stuck_in_state"][0]["pid"]
    assert f"stuck: nvme-delete {nqn} {ctrl} (pid {pid}," in facts["status_while_hung"]


def test_watchdog_did_not_fire(vm_scenario: ScenarioResult) -> None:
    """Over a minute with the helper hung: no watchdog timeout, no restart, same main process."""
    guest_passed(vm_scenario)
    watchdog_kept(vm_scenario)


def test_later_sweeps_still_run(vm_scenario: ScenarioResult) -> None:
    """A later crash is swept while the hang lasts; the stuck deletion is not tried again meanwhile."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    assert ("dm", "pvc-later") in removed(vm_scenario)
    pid = facts["stuck_in_state"][0]["pid"]
    assert len(facts["skipped_while_stuck"]) >= 5  # one a sweep, forced every 5 s for 75 s
    assert set(facts["skipped_while_stuck"]) == {f"an earlier nvme-delete (pid {pid}) for it is still stuck"}
    assert facts["connect_held_for_s"] > 60


def test_released_deletion_finished_by_the_kernel(vm_scenario: ScenarioResult) -> None:
    """Once the held Connect is answered, the kernel completes the abandoned write's deletion: the
    controller goes at once, the helper exits, the state file no longer lists it, and lhsweep never
    removed (nor tried again) the controller itself."""
    guest_passed(vm_scenario)
    facts = vm_scenario.facts
    nqn = facts["nqn"]
    assert facts["released_commands"] == 1 and not facts["stalled_target_errors"]
    assert facts["gone_after_release_s"] < 10
    assert facts["stuck_process_after_release"] in (["python3 Z"], [""])  # exited, maybe not yet reaped
    assert facts["stuck_process_after_sweep"] == [""] and not facts["stuck_in_state_after"]
    assert nqn not in facts["after"]["nvme"]
    assert not volume_devices(VOLUME) & devices(facts["after"])
    # The kernel began one deletion, lhsweep's one write, and finished it once the attempt failed.
    assert len([line for line in facts["kernel_log"] if f'Removing ctrl: NQN "{nqn}"' in line]) == 1
    acted = (Event.REMOVED.value, Event.FAILED.value)
    assert not [e for e in facts["nvme_entries"] if e["MESSAGE_ID"] in acted]
