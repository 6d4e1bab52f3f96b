"""What the hung-removal scenarios share: while a removal is stuck in the kernel, the service lives on.

Each scenario makes its own hang (tests/vm/scenarios/hung.py: a dmsetup wrapper with
`sweep.removal = "tools"`; hung_kernel.py: the in-process kernel call), then `while_hung` checks
the rest the same way: a later crash's leftovers are removed meanwhile, and for more than
WatchdogSec (60 s as shipped) sweeps keep being forced while the service keeps its main process.
"""

from __future__ import annotations

import time

from lhsweep.journal import Event  # installed by the .deb under test
from lhvm import crash, runtime, service, volumes
from lhvm.observe import Facts, check, snapshot
from lhvm.proc import read

WATCHDOG_S = 60
ACTION_TIMEOUT_S = 3
LATER = "pvc-later"
UNIT_PROPS = ("ActiveState", "SubState", "NRestarts", "MainPID")


def process_state(pid: int) -> str:
    """A process's comm and scheduler state (e.g. "dd D"), '' when it is gone."""
    stat = read(f"/proc/{pid}/stat")
    return f"{read(f'/proc/{pid}/comm')} {stat.rsplit(')', 1)[1].split()[0]}" if stat else ""


def kernel_stack(pid: int) -> list[str]:
    """The kernel functions a process is in (/proc/PID/stack, root only), innermost first."""
    return [line.split()[1].split("+")[0] for line in read(f"/proc/{pid}/stack").splitlines() if " " in line]


def while_hung(facts: Facts, since: int, hung_at: float, main_pid: str) -> None:
    """A later crash is swept meanwhile; sweeps forced until WatchdogSec + 15 s after `hung_at`."""
    later = runtime.run_instance_manager()
    after_vol = volumes.make_v2_volume(LATER, ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    crash.crash(later, after_vol)
    later_removed = service.wait_entry(
        Event.REMOVED, since, timeout=60, LHSWEEP_DEVICE=after_vol.name, LHSWEEP_KIND="dm"
    )
    facts["later_removed"] = service.fields_of(later_removed)
    while time.monotonic() - hung_at < WATCHDOG_S + 15:
        service.force_sweep()
        time.sleep(5)
    facts["held_for_s"] = round(time.monotonic() - hung_at, 1)
    facts["while_hung"] = snapshot()
    facts["status_while_hung"] = service.status()
    facts["unit"] = {p: service.show(p) for p in UNIT_PROPS}
    facts["main_pid_before"] = main_pid


def check_service_kept(facts: Facts, main_pid: str) -> None:
    """The service was neither restarted nor failed while the removal hung."""
    unit = facts.values["unit"]
    check(
        unit["NRestarts"] == "0" and unit["MainPID"] == main_pid and unit["ActiveState"] == "active",
        f"the service was restarted or failed: {unit}",
    )
