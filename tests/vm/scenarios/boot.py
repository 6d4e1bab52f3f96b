"""Guest scenario (needs the .deb): leftovers present when lhsweep starts are removed by the boot sweep.

An instance-manager crashes with two volumes attached while lhsweep is stopped: one whose
controller has vanished (ctrl_loss_tmo passed) and one, with a v1.12 `volume-<vol>` NQN and
Longhorn's 30 s ctrl_loss_tmo, whose controller is still reconnecting. `systemctl start` returns
at READY=1 (Type=notify), once the boot sweep's plan is made; the devices are gone when that
sweep ends (see start_bound.py for why READY does not wait for the removals).
"""

from __future__ import annotations

import os

from lhvm import crash, nvmet, service, volumes
from lhvm.observe import Facts, check, snapshot
from lhvm.proc import sh

from lhsweep.journal import Event  # installed by the .deb under test


def main() -> None:
    """The boot-sweep scenario."""
    facts = Facts()
    manager = crash.begin()
    gone = volumes.make_v2_volume("pvc-boot-gone", ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    connecting = volumes.make_v2_volume("pvc-boot-conn", nqn_style="volume")
    crash.crash(manager, gone, connecting)
    nvmet.wait_controllers_gone(gone.nqn, timeout=crash.CTRL_LOSS_TMO + 60)
    before = snapshot()
    facts["before"] = before
    facts["connecting_controllers"] = nvmet.controllers(connecting.nqn)
    check({gone.name, connecting.name} <= set(before["dm"]), "the leftovers were not made")
    check(connecting.nqn in before["nvme"], "the reconnecting controller is already gone")
    since = service.mark()
    service.start()  # returns once READY=1 was sent and the boot sweep has ended
    after = snapshot()
    facts["after"] = after
    facts["active_enter_monotonic_us"] = int(service.show("ActiveEnterTimestampMonotonic"))
    facts["removed"] = [
        dict(service.fields_of(e), monotonic_us=int(e["__MONOTONIC_TIMESTAMP"]))
        for e in service.entries(since, Event.REMOVED)
    ]
    facts["scan_after"] = service.scan()
    # The removals were in-process (dm ioctl): udev still drops the /dev/mapper links, as after dmsetup.
    sh("udevadm", "settle", "--timeout=30", check=False, timeout=60)
    facts["mapper_after"] = sorted(os.listdir("/dev/mapper"))
    for name in (gone.name, connecting.name):
        check(name not in after["dm"] and name not in after["longhorn"], f"{name} left after the boot sweep")
    check(connecting.nqn not in after["nvme"], "the reconnecting controller left after the boot sweep")


if __name__ == "__main__":
    main()
