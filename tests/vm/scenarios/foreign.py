"""Guest scenario (needs the .deb): foreign dm devices are untouched while a V2 leftover is removed.

Beside the crashed `pvc-fctl`: an LVM volume, a plain linear device, a Longhorn-shaped linear
device on a loop (`pvc-lookalike`, no node), and a linear device over an NVMe/TCP namespace of a
subsystem whose NQN is not Longhorn's (`pvc-othernqn`, its controller alive).
"""

from __future__ import annotations

from lhvm import crash, nvmet, service, volumes
from lhvm.observe import Facts, check, snapshot

from lhsweep.journal import Event  # installed by the .deb under test

OTHER_NQN = "nqn.2014-08.org.lhvm:foreign-disk"


def main() -> None:
    """The foreign dm scenario."""
    facts = Facts()
    manager = crash.begin()
    service.start()
    since = service.mark()
    control = volumes.make_v2_volume("pvc-fctl", ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    foreign = [volumes.make_lvm(), "plain-linear", "pvc-lookalike", "pvc-othernqn"]
    volumes.make_plain_linear("plain-linear")
    volumes.make_plain_linear("pvc-lookalike")
    nvmet.export(OTHER_NQN, 16)
    volumes.dm_linear("pvc-othernqn", f"/dev/{nvmet.connect(OTHER_NQN, crash.CTRL_LOSS_TMO)}")
    facts["foreign"] = foreign
    facts["before"] = snapshot()
    crash.crash(manager, control)
    service.wait_entry(Event.REMOVED, since, timeout=60, LHSWEEP_DEVICE=control.name, LHSWEEP_KIND="dm")
    facts["sweeps"] = [service.force_sweep()["sweep_number"] for _ in range(2)]
    after = snapshot()
    facts["after"] = after
    facts["other_controllers"] = nvmet.controllers(OTHER_NQN)
    facts["scan_after"] = service.scan()
    missing = sorted(set(foreign) - set(after["dm"]))
    check(not missing, f"foreign dm devices were removed: {missing}")
    check(
        OTHER_NQN in after["nvme"] and "live" in facts.values["other_controllers"].values(),
        "the non-Longhorn NVMe controller was disconnected",
    )
    check(control.name not in after["dm"] and control.name not in after["longhorn"], "the V2 leftover stayed")


if __name__ == "__main__":
    main()
