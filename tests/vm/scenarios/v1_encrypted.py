"""Guest scenario (needs the .deb): V1 encrypted volumes (dm-crypt `<vol>` beside /dev/longhorn/<vol>)
are untouched while a crashed V2 leftover beside them is removed (the upstream regression).

`pvc-v1enc`'s node is the engine's disk, as V1 makes it; `pvc-v1node`'s node points at the crypt
device itself. No V2 instance-manager runs once `pvc-v1ctl`'s has crashed, so lhsweep acts.
"""

from __future__ import annotations

from lhvm import crash, service, volumes
from lhvm.observe import Facts, check, snapshot
from lhvm.proc import run

from lhsweep.journal import Event  # installed by the .deb under test

V1 = ("pvc-v1enc", "pvc-v1node")


def main() -> None:
    """The V1 encrypted scenario."""
    facts = Facts()
    manager = crash.begin()
    service.start()
    since = service.mark()
    control = volumes.make_v2_volume("pvc-v1ctl", ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    facts["devs"] = {
        "pvc-v1enc": volumes.make_v1_encrypted("pvc-v1enc"),
        "pvc-v1node": volumes.make_v1_encrypted("pvc-v1node", node_at="crypt"),
    }
    facts["before"] = snapshot()
    crash.crash(manager, control)
    service.wait_entry(Event.REMOVED, since, timeout=60, LHSWEEP_DEVICE=control.name, LHSWEEP_KIND="dm")
    facts["sweeps"] = [service.force_sweep()["sweep_number"] for _ in range(2)]
    after = snapshot()
    facts["after"] = after
    facts["crypt_status"] = {name: run("cryptsetup", "status", name).returncode for name in V1}
    facts["scan_after"] = service.scan()
    facts["v1_decisions"] = [
        service.fields_of(e) for e in service.entries(since, Event.DECISION) if e.get("LHSWEEP_DEVICE") in V1
    ]
    for name in V1:
        check(name in after["dm"] and name in after["longhorn"], f"V1 volume {name} was touched")
    check(facts.values["crypt_status"] == {name: 0 for name in V1}, "a V1 crypt device is not active")
    check(control.name not in after["dm"] and control.name not in after["longhorn"], "the V2 leftover stayed")


if __name__ == "__main__":
    main()
