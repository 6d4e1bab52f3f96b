"""Guest scenario (needs the .deb): a removal that hangs in the kernel does not wedge the service.

How the hang is made (this kernel offers no direct way to make a dm removal block: a device with
I/O in flight is open, hence busy, and never reaches removal), so this scenario runs lhsweep with
`sweep.removal = "tools"`, and a /usr/local/sbin/dmsetup wrapper, first on the service's PATH,
turns `dmsetup remove pvc-hung` into an O_DIRECT read of an NVMe/TCP namespace whose only
controller reconnects forever (`--ctrl-loss-tmo -1`, target gone). The read is queued by NVMe
multipath, so the process sits in D state and survives SIGKILL. Every other call goes to the real dmsetup.

lhsweep must report the action stuck, keep feeding the watchdog (WatchdogSec=60s as shipped: no
"Watchdog timeout", NRestarts=0, same MainPID for more than a minute), keep sweeping (a later
crash's leftovers are removed meanwhile), and remove `pvc-hung` once the hang is released.
"""

from __future__ import annotations

import os
import time

from lhvm import crash, hang, nvmet, service, volumes
from lhvm.observe import Facts, check, snapshot
from lhvm.proc import sh, wait_for

from lhsweep.journal import Event  # installed by the .deb under test

VOLUME = "pvc-hung"
HANG_NQN = "nqn.2014-08.org.lhvm:hang"  # not Longhorn's: lhsweep leaves this controller alone
ARMED = "/run/lhvm/hang-device"
WRAPPER = "/usr/local/sbin/dmsetup"
WRAPPER_SCRIPT = f"""#!/bin/sh
# lhvm hung-device scenario: while {ARMED} names a device, `dmsetup remove {VOLUME}` blocks in the
# kernel (an O_DIRECT read that NVMe multipath queues); everything else is the real dmsetup.
if [ "$*" = "remove -- {VOLUME}" ] && [ -r {ARMED} ]; then
    exec dd if="$(cat {ARMED})" of=/dev/null bs=4096 count=1 iflag=direct status=none
fi
exec /sbin/dmsetup "$@"
"""


def arm_hang() -> str:
    """A namespace whose reads block forever; the wrapper is installed and armed with it."""
    target = nvmet.export(HANG_NQN, 16)
    head = nvmet.connect(HANG_NQN, ctrl_loss_tmo=-1)
    nvmet.crash(target)
    wait_for(
        "the hang controller to reconnect",
        lambda: "connecting" in nvmet.controllers(HANG_NQN).values(),
        timeout=60,
    )
    os.makedirs(os.path.dirname(ARMED), exist_ok=True)
    with open(ARMED, "w") as handle:
        handle.write(f"/dev/{head}\n")
    with open(WRAPPER, "w") as handle:
        handle.write(WRAPPER_SCRIPT)
    os.chmod(WRAPPER, 0o755)
    return head


def disarm() -> None:
    """Release the blocked read (its controller goes) and put the real dmsetup back in charge."""
    for path in (ARMED, WRAPPER):
        if os.path.exists(path):
            os.unlink(path)
    sh("nvme", "disconnect", "--nqn", HANG_NQN, check=False, timeout=120)


def main() -> None:
    """The hung-device scenario."""
    facts = Facts()
    manager = crash.begin(sweep={"action_timeout": hang.ACTION_TIMEOUT_S, "removal": "tools"})
    service.start()
    since = service.mark()
    main_pid = service.show("MainPID")
    try:
        facts["hang_device"] = arm_hang()
        volume = volumes.make_v2_volume(VOLUME, ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
        crash.crash(manager, volume, wait_gone=True)
        stuck = service.wait_entry(Event.STUCK, since, timeout=60, LHSWEEP_DEVICE=VOLUME, LHSWEEP_KIND="dm")
        hung_at = time.monotonic()
        facts["stuck_entry"] = service.fields_of(stuck)
        in_state = wait_for(
            "the state file to list the stuck action", lambda: service.last_sweep().get("stuck")
        )
        facts["stuck_in_state"] = in_state
        facts["stuck_process"] = [hang.process_state(int(s["pid"])) for s in in_state]
        hang.while_hung(facts, since, hung_at, main_pid)
    finally:
        disarm()
    released = service.mark()
    removed = service.wait_entry(
        Event.REMOVED, released, timeout=60, LHSWEEP_DEVICE=VOLUME, LHSWEEP_KIND="dm"
    )
    facts["removed_entry"] = service.fields_of(removed)
    after = snapshot()
    facts["after"] = after
    check(
        facts.values["stuck_process"] == ["dd D"],
        f"the hung action is not in D state: {facts.values['stuck_process']}",
    )
    hang.check_service_kept(facts, main_pid)
    check(VOLUME not in after["dm"] and VOLUME not in after["longhorn"], "pvc-hung not removed after release")


if __name__ == "__main__":
    main()
