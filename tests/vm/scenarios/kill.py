"""Guest scenario (needs the .deb): lhsweep SIGKILLed in the middle of a sweep loses no record.

Four crashed volumes' leftovers (dm devices and nodes) wait when lhsweep starts; the removal of
the third dm device sleeps (lhvm.slowtool), so the boot sweep is known to be in the middle: two
dm devices removed, the rest not. The main process is then SIGKILLed (as the OOM killer would),
the wrapper removed, and systemd restarts the service (Restart=on-failure), whose boot sweep
removes the rest. The journal must account for every removed object exactly once, before or
after the kill, and a foreign dm device must be untouched.
"""

from __future__ import annotations

import os
import signal

from lhvm import crash, service, slowtool, volumes
from lhvm.observe import Facts, check, snapshot
from lhvm.proc import wait_for

from lhsweep.journal import Event  # installed by the .deb under test

NAMES = [f"pvc-kill-{c}" for c in "abcd"]  # removal order: dm devices by name, then nodes
FOREIGN = "plain-kill"


def main() -> None:
    """The kill-mid-sweep scenario."""
    facts = Facts()
    manager = crash.begin(sweep={"action_timeout": 300, "removal": "tools"})
    made = [volumes.make_v2_volume(name, ctrl_loss_tmo=crash.CTRL_LOSS_TMO) for name in NAMES]
    volumes.make_plain_linear(FOREIGN)
    crash.crash(manager, *made, wait_gone=True)
    facts["before"] = snapshot()
    slowtool.arm(NAMES[2])
    since = service.mark()
    try:
        service.start(boot_sweep=False)
        wait_for("the third removal to be under way", lambda: NAMES[2] in slowtool.entered(),
                 timeout=120)
        victim = int(service.show("MainPID"))
        facts["removed_before_kill"] = [
            (e["LHSWEEP_KIND"], e["LHSWEEP_DEVICE"]) for e in service.entries(since, Event.REMOVED)]
        os.kill(victim, signal.SIGKILL)
        facts["killed_pid"] = victim
    finally:
        slowtool.disarm()
    wait_for("systemd to restart lhsweep",
             lambda: service.show("MainPID") not in ("0", str(victim)) and
             service.active_state() == "active", timeout=120)
    facts["restarted_pid"] = int(service.show("MainPID"))
    facts["n_restarts"] = service.show("NRestarts")
    service.wait_boot_sweep(timeout=300)
    facts["removed"] = [
        {"kind": e["LHSWEEP_KIND"], "device": e["LHSWEEP_DEVICE"], "pid": int(e["_PID"]),
         "verdict_reason": e.get("LHSWEEP_VERDICT_REASON", "")}
        for e in service.entries(since, Event.REMOVED)]
    after = snapshot()
    facts["after"] = after
    wanted = sorted([("dm", n) for n in NAMES] + [("node", n) for n in NAMES])
    got = sorted((r["kind"], r["device"]) for r in facts.values["removed"])
    check(got == wanted, f"the journal does not list each removal exactly once: {got}")
    check(FOREIGN in after["dm"], "the foreign dm device was removed")
    left = [n for n in NAMES if n in after["dm"] or n in after["longhorn"]]
    check(not left, f"leftovers still there after the restart: {left}")


if __name__ == "__main__":
    main()
