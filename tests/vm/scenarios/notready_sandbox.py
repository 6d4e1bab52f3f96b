"""Guest scenario (needs the .deb): a NOTREADY sandbox whose instance-manager container still runs.

The pod's pause process is SIGKILLed: CRI reports the sandbox NOTREADY while the instance-manager
container (in its own PID namespace, as kubelet runs it) keeps running and its volume keeps its
target. lhsweep must count that instance-manager alive and remove nothing; once the container
crashes too, the leftover is swept.
"""

from __future__ import annotations

from typing import Any

from lhvm import crash, runtime, service, volumes
from lhvm.observe import Facts, check, snapshot

from lhsweep.journal import Event  # installed by the .deb under test

VOLUME = "pvc-notready"


def summary(state: dict[str, Any]) -> dict[str, Any]:
    """What the host-side test looks at in one sweep's state file."""
    return {"number": state["sweep_number"], "runtime": state["report"]["runtime"],
            "counts": state["counts"]}


def main() -> None:
    """The NOTREADY-sandbox scenario."""
    facts = Facts()
    service.stop()
    service.configure()
    runtime.start_containerd()
    manager = runtime.run_instance_manager(own_pid_namespace=True)
    volume = volumes.make_v2_volume(VOLUME, ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    since = service.mark()
    service.start()
    runtime.kill_sandbox(manager)
    facts["sandbox_state"] = runtime.sandbox_state(manager.sandbox_id)
    facts["container_state"] = runtime.container_state(manager.container_id)
    check(facts.values["container_state"] == "running", "the container died with its pause process")
    facts["sweeps"] = [summary(service.force_sweep(how)) for how in ("reload", "pods")]
    facts["scan"] = service.scan()
    kept = snapshot()
    facts["kept"] = kept
    facts["removed_while_running"] = service.entries(since, Event.REMOVED)
    check(VOLUME in kept["dm"] and VOLUME in kept["longhorn"],
          "the running instance-manager's volume was removed because its sandbox is not ready")
    check(facts.values["removed_while_running"] == [], "something was removed while the container ran")
    crashed = service.mark()
    crash.crash(manager, volume)
    removed = service.wait_entry(Event.REMOVED, crashed, timeout=90, LHSWEEP_DEVICE=VOLUME,
                                 LHSWEEP_KIND="dm")
    facts["removed_entry"] = service.fields_of(removed)
    facts["after"] = crash.wait_swept(volume)


if __name__ == "__main__":
    main()
