"""Guest scenario (needs the .deb): with containerd stopped nothing is removed and `lhsweep status`
says the runtime is unknown; once containerd is back, the daemon sweeps the leftover on its own."""

from __future__ import annotations

import os
import signal

from lhvm import crash, nvmet, runtime, service, volumes
from lhvm.observe import Facts, check, snapshot

from lhsweep.journal import Event  # installed by the .deb under test

VOLUME = "pvc-rtdown"


def main() -> None:
    """The runtime-down scenario."""
    facts = Facts()
    manager = crash.begin()
    service.start()
    since = service.mark()
    volume = volumes.make_v2_volume(VOLUME, ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    runtime.stop_containerd()
    os.kill(manager.pid, signal.SIGKILL)  # the instance-manager dies while nobody can ask the runtime
    nvmet.crash(volume.target)
    nvmet.wait_controllers_gone(volume.nqn, timeout=crash.CTRL_LOSS_TMO + 60)
    down = [service.force_sweep() for _ in range(2)]
    facts["sweeps_while_down"] = [
        {"number": s["sweep_number"], "runtime": s["report"]["runtime"], "counts": s["counts"]} for s in down
    ]
    unknown = service.wait_entry(Event.RUNTIME_UNKNOWN, since, timeout=30)
    facts["unknown_entry"] = service.fields_of(unknown)
    facts["status_while_down"] = service.status()
    while_down = snapshot()
    facts["while_down"] = while_down
    facts["removed_while_down"] = service.entries(since, Event.REMOVED)
    check(
        VOLUME in while_down["dm"] and VOLUME in while_down["longhorn"], "removed while the runtime was down"
    )
    check(all(s["report"]["runtime"]["state"] == "unknown" for s in down), "a sweep saw a runtime")
    check("runtime: unknown" in facts.values["status_while_down"], "lhsweep status does not say unknown")
    back = service.mark()
    runtime.start_containerd()
    removed = service.wait_entry(Event.REMOVED, back, timeout=90, LHSWEEP_DEVICE=VOLUME, LHSWEEP_KIND="dm")
    facts["removed_entry"] = service.fields_of(removed)
    facts["status_after"] = service.status()
    after = snapshot()
    facts["after"] = after
    check(VOLUME not in after["dm"] and VOLUME not in after["longhorn"], "not swept once containerd was back")


if __name__ == "__main__":
    main()
