"""Guest scenario (needs the .deb): a stale volume whose go-spdk-helper lock
(/run/longhorn/spdk-<vol>.lock) another process holds is skipped, and swept once the lock is free."""

from __future__ import annotations

import subprocess

from lhvm import crash, service, volumes
from lhvm.observe import Facts, check, snapshot
from lhvm.proc import run, wait_for

from lhsweep.journal import Event  # installed by the .deb under test

VOLUME = "pvc-locked"
LOCK = f"/run/longhorn/spdk-{VOLUME}.lock"


def lock_taken() -> bool:
    """True when someone else holds the lock (a non-blocking flock attempt fails)."""
    return run("flock", "--nonblock", "--conflict-exit-code", "7", LOCK, "true").returncode == 7


def main() -> None:
    """The lock-held scenario."""
    facts = Facts()
    manager = crash.begin()
    service.start()
    since = service.mark()
    volume = volumes.make_v2_volume(VOLUME, ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    holder = subprocess.Popen(["flock", "--no-fork", LOCK, "sleep", "600"])
    try:
        wait_for(f"{LOCK} to be held", lock_taken, timeout=30)
        crash.crash(manager, volume, wait_gone=True)
        skipped = service.wait_entry(
            Event.DECISION,
            since,
            timeout=60,
            LHSWEEP_DEVICE=VOLUME,
            LHSWEEP_KIND="dm",
            LHSWEEP_RESULT="skipped",
        )
        facts["skipped_entry"] = service.fields_of(skipped)
        facts["sweeps_while_locked"] = [service.force_sweep()["sweep_number"] for _ in range(2)]
        locked = snapshot()
        facts["locked"] = locked
        facts["removed_while_locked"] = service.matching(
            service.entries(since, Event.REMOVED), LHSWEEP_VOLUME=VOLUME
        )
        check(VOLUME in locked["dm"] and VOLUME in locked["longhorn"], "removed while the lock was held")
        check(
            LOCK in skipped.get("LHSWEEP_REASON", ""),
            f"the lock is not named: {skipped.get('LHSWEEP_REASON')}",
        )
    finally:
        holder.kill()
        holder.wait()
    released = service.mark()
    service.force_sweep()
    removed = service.wait_entry(
        Event.REMOVED, released, timeout=60, LHSWEEP_DEVICE=VOLUME, LHSWEEP_KIND="dm"
    )
    facts["removed_entry"] = service.fields_of(removed)
    after = snapshot()
    facts["after"] = after
    check(VOLUME not in after["dm"] and VOLUME not in after["longhorn"], "not swept once the lock was free")


if __name__ == "__main__":
    main()
