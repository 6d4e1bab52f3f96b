"""Guest scenario (needs the .deb): a running instance-manager's volumes are untouched across sweeps.

The old instance-manager crashes with `pvc-old` attached; a new one starts (new pod, new UID),
attaches `pvc-live` (target alive) and `pvc-young` (made after it started; its target then died).
lhsweep removes `pvc-old` (older than the running instance-manager, backing gone) and leaves the
other two alone across sweeps forced by `systemctl reload` and by a new kubelet pod directory.
"""

from __future__ import annotations

from lhvm import crash, nvmet, runtime, service, volumes
from lhvm.observe import Facts, check, snapshot
from lhvm.proc import sh

from lhsweep.journal import Event  # installed by the .deb under test

KEPT = ("pvc-live", "pvc-young")
FORCED = ("reload", "reload", "reload", "pods")


def main() -> None:
    """The live instance-manager scenario."""
    facts = Facts()
    old_manager = crash.begin()
    old = volumes.make_v2_volume("pvc-old", ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    crash.crash(old_manager, old, wait_gone=True)
    runtime.run_instance_manager()  # the replacement instance-manager, running from now on
    live = volumes.make_v2_volume("pvc-live", ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    young = volumes.make_v2_volume("pvc-young", ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    nvmet.crash(young.target)
    nvmet.wait_controllers_gone(young.nqn, timeout=crash.CTRL_LOSS_TMO + 60)
    facts["before"] = snapshot()
    since = service.mark()
    service.start()
    service.wait_entry(Event.REMOVED, since, timeout=60, LHSWEEP_DEVICE=old.name, LHSWEEP_KIND="dm")
    sweeps = [service.force_sweep(how) for how in FORCED]
    facts["sweeps"] = [
        {"number": s["sweep_number"], "triggers": s["triggers"], "counts": s["counts"]} for s in sweeps
    ]
    after = snapshot()
    facts["after"] = after
    facts["controllers_after"] = nvmet.controllers(live.nqn)
    facts["scan_after"] = service.scan()
    sh("dd", f"if=/dev/longhorn/{live.name}", "of=/dev/null", "bs=4096", "count=16", "iflag=direct")
    facts["read_back"] = True  # the running volume still serves I/O
    facts["live_decisions"] = [
        service.fields_of(e)
        for e in service.entries(since, Event.DECISION)
        if e.get("LHSWEEP_VOLUME") in KEPT
    ]
    for name in KEPT:
        check(name in after["dm"] and name in after["longhorn"], f"{name} was touched")
    check(old.name not in after["dm"] and old.name not in after["longhorn"], "pvc-old was not removed")
    check(
        live.nqn in after["nvme"] and "live" in facts.values["controllers_after"].values(),
        "the running volume's controller is not live any more",
    )
    check(all(s["counts"]["removed"] == 0 for s in sweeps), f"a forced sweep removed something: {sweeps}")


if __name__ == "__main__":
    main()
