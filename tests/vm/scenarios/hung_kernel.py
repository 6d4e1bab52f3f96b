"""Guest scenario (needs the .deb): lhsweep's in-process NVMe removal hangs in the kernel.

lhsweep runs as shipped (`sweep.removal = "kernel"`, no wrapper): it deletes a controller by
writing "1" to /sys/class/nvme/<ctrl>/delete_controller in its kernel-call helper child. How the
write is made to hang, on the real kernel: the volume `pvc-hungk` is attached over 127.0.0.1:4421;
its target then dies and a stalled target (lhvm.stalltarget) takes over that port: the kernel's
reconnect attempt gets through TCP and the ICReq exchange, then waits for its fabrics Connect
command, which is never answered. nvme_core's admin_timeout (the longest the kernel waits for it)
is raised to 600 s before `nvme connect`, because the default 60 s would end the hang before a
minute of watchdog checks; the kernel's own shorter waits do not block for long: nvme-tcp sets
TCP_SYNCNT 1 on its sockets (an unanswered SYN fails in ~3 s whatever net.ipv4.tcp_syn_retries
says) and 10 s sk_rcvtimeo for the ICResp. The controller is `connecting` and its reconnect work
blocked before the instance-manager dies; lhsweep then removes the dm device and the node, and
its delete_controller write waits (uninterruptibly) for that reconnect work.

lhsweep must report the deletion stuck (STUCK entry and the state file's "stuck" list, argv
("nvme-delete", nqn, ctrl) as helper calls are labelled), the abandoned helper must really be in
D state in the kernel's controller deletion, and the rest is hung.py's: WatchdogSec=60 as shipped,
no restart, a later crash swept meanwhile. Released (the held Connect answered with an error), the
reconnect attempt fails, and the kernel finishes the deletion lhsweep's abandoned write asked for.
"""

from __future__ import annotations

import os
import time
from typing import Any

from lhvm import crash, hang, nvmet, runtime, service, volumes
from lhvm.observe import Facts, check, snapshot
from lhvm.proc import read, run, wait_for
from lhvm.stalltarget import StalledTarget

from lhsweep.journal import Event  # installed by the .deb under test

VOLUME = "pvc-hungk"
SERVICE = "4421"  # the stalled target's port, on 127.0.0.1 like every target here
ADMIN_TIMEOUT = "/sys/module/nvme_core/parameters/admin_timeout"
ADMIN_TIMEOUT_S = 600


def _put(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def reconnect_workers() -> dict[str, list[str]]:
    """Kernel threads now inside nvme-tcp's reconnect work: "pid comm" -> their kernel stack."""
    found = {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        stack = hang.kernel_stack(pid)
        if "nvme_tcp_reconnect_ctrl_work" in stack:
            found[f"{pid} {read(f'/proc/{pid}/comm')}"] = stack
    return found


def stall(manager: runtime.InstanceManager, volume: volumes.V2Volume) -> StalledTarget:
    """The volume's target dies and a stalled one holds its reconnect; then the instance-manager dies."""
    nvmet.crash(volume.target)
    nvmet.drop_port(SERVICE)
    stalled = StalledTarget(nvmet.ADDRESS, SERVICE)
    wait_for("the reconnect's Connect command to be held", lambda: stalled.holding() > 0, timeout=60)
    runtime.kill_instance_manager(manager)
    return stalled


def record_stuck(facts: Facts, since: int, nqn: str) -> list[int]:
    """Wait for the STUCK entry; record it, the state file's stuck list and its processes' pids."""
    stuck = service.wait_entry(Event.STUCK, since, timeout=90, LHSWEEP_DEVICE=nqn, LHSWEEP_KIND="nvme")
    facts["stuck_entry"] = service.fields_of(stuck)
    in_state = wait_for("the state file to list the stuck action", lambda: service.last_sweep().get("stuck"))
    facts["stuck_in_state"] = in_state
    pids = [int(s["pid"]) for s in in_state]
    facts["stuck_process"] = [hang.process_state(pid) for pid in pids]
    facts["stuck_stack"] = [hang.kernel_stack(pid) for pid in pids]
    facts["stuck_cmdline"] = [read(f"/proc/{pid}/cmdline").rstrip("\0").split("\0") for pid in pids]
    facts["controllers_when_stuck"] = nvmet.controllers(nqn)
    return pids


def record_end_of_hang(facts: Facts, since: int, nqn: str, pids: list[int], stalled: StalledTarget) -> None:
    """The helper, the held command and the controller as the hang ends; what lhsweep said meanwhile."""
    facts["stuck_process_at_end"] = [hang.process_state(pid) for pid in pids]
    facts["connect_held_for_s"] = round(stalled.held_for(), 1)
    facts["controllers_at_end"] = nvmet.controllers(nqn)
    decisions = service.entries(since, Event.DECISION)
    skipped = service.matching(decisions, LHSWEEP_DEVICE=nqn, LHSWEEP_RESULT="skipped")
    facts["skipped_while_stuck"] = [e["LHSWEEP_REASON"] for e in skipped]


def kernel_log() -> list[str]:
    """The kernel's messages so far (dmesg), one a line."""
    return run("dmesg").stdout.splitlines()


def record_release(facts: Facts, since: int, nqn: str, pids: list[int], released_at: float) -> dict[str, Any]:
    """After the release: the controller gone, the helper exited, lhsweep's entries for the NQN."""
    nvmet.wait_controllers_gone(nqn, timeout=60)
    facts["gone_after_release_s"] = round(time.monotonic() - released_at, 1)
    facts["stuck_process_after_release"] = [hang.process_state(pid) for pid in pids]  # exited: a zombie
    facts["stuck_in_state_after"] = service.force_sweep().get("stuck")
    facts["stuck_process_after_sweep"] = [hang.process_state(pid) for pid in pids]  # reaped by the daemon
    facts["nvme_entries"] = [
        service.fields_of(e) for e in service.matching(service.entries(since), LHSWEEP_DEVICE=nqn)
    ]
    names = tuple(f"{name}: " for name in facts.values["controllers_when_stalled"])
    later = kernel_log()[facts.values["kernel_log_from"]:]
    facts["kernel_log"] = [line for line in later if any(n in line for n in names)]
    after = snapshot()
    facts["after"] = after
    return after


def main() -> None:
    """The in-process hung-removal scenario."""
    facts = Facts()
    manager = crash.begin(sweep={"action_timeout": hang.ACTION_TIMEOUT_S})
    facts["config"] = read(service.CONFIG)
    facts["kernel_log_from"] = len(kernel_log())
    service.start()
    since = service.mark()
    main_pid = service.show("MainPID")
    default_timeout = read(ADMIN_TIMEOUT)
    _put(ADMIN_TIMEOUT, str(ADMIN_TIMEOUT_S))
    stalled = None
    try:
        volume = volumes.make_v2_volume(VOLUME, service=SERVICE)  # Longhorn's ctrl_loss_tmo 30 s
        facts["nqn"] = volume.nqn
        stalled = stall(manager, volume)
        facts["controllers_when_stalled"] = nvmet.controllers(volume.nqn)
        facts["workers_when_stalled"] = reconnect_workers()
        pids = record_stuck(facts, since, volume.nqn)
        hang.while_hung(facts, since, time.monotonic(), main_pid)
        record_end_of_hang(facts, since, volume.nqn, pids, stalled)
    finally:
        released_at = time.monotonic()
        facts["released_commands"] = stalled.release() if stalled else 0
        facts["stalled_target_errors"] = stalled.errors if stalled else []
        _put(ADMIN_TIMEOUT, default_timeout)
    after = record_release(facts, since, volume.nqn, pids, released_at)
    in_d = facts.values["stuck_process"] + facts.values["stuck_process_at_end"]
    check(in_d == ["python3 D"] * 2, f"the helper was not stuck in D state throughout: {in_d}")
    hang.check_service_kept(facts, main_pid)
    exited = facts.values["stuck_process_after_release"] + facts.values["stuck_process_after_sweep"]
    check(exited in (["python3 Z", ""], ["", ""]), f"the abandoned helper outlived the release: {exited}")
    check(not facts.values["stuck_in_state_after"], "the state file still lists a stuck action")
    check(volume.nqn not in after["nvme"], f"{volume.nqn} not gone after release")
    check(VOLUME not in after["dm"] and VOLUME not in after["longhorn"], f"{VOLUME} dm or node left")


if __name__ == "__main__":
    main()
