"""Guest scenario (needs the .deb): a stale volume with a mounted filesystem is left alone and reported
busy with its holder; once unmounted, the next sweep removes it."""

from __future__ import annotations

from lhvm import crash, service, volumes
from lhvm.observe import Facts, check, snapshot
from lhvm.proc import sh

from lhsweep.journal import Event  # installed by the .deb under test

VOLUME = "pvc-busy"


def main() -> None:
    """The busy scenario."""
    facts = Facts()
    manager = crash.begin()
    service.start()
    since = service.mark()
    volume = volumes.make_v2_volume(VOLUME, ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    mount_point = volumes.mount_ext4(f"/dev/longhorn/{VOLUME}", VOLUME)
    facts["mount_point"] = mount_point
    crash.crash(manager, volume, wait_gone=True)
    busy = service.wait_entry(Event.BUSY, since, timeout=60, LHSWEEP_DEVICE=VOLUME, LHSWEEP_KIND="dm")
    facts["busy_entry"] = service.fields_of(busy)
    facts["sweeps_while_mounted"] = [service.force_sweep()["sweep_number"] for _ in range(2)]
    mounted = snapshot()
    facts["mounted"] = mounted
    facts["status_while_mounted"] = service.status()
    facts["removed_while_mounted"] = service.matching(
        service.entries(since, Event.REMOVED), LHSWEEP_VOLUME=VOLUME
    )
    check(VOLUME in mounted["dm"] and VOLUME in mounted["longhorn"], "the mounted volume was removed")
    check(mount_point in busy.get("LHSWEEP_HOLDER", ""), f"holder not named: {busy.get('LHSWEEP_HOLDER')}")
    sh("umount", mount_point)
    unmounted = service.mark()
    removed = service.wait_entry(
        Event.REMOVED, unmounted, timeout=60, LHSWEEP_DEVICE=VOLUME, LHSWEEP_KIND="dm"
    )
    facts["removed_entry"] = service.fields_of(removed)
    service.wait_entry(Event.REMOVED, unmounted, timeout=30, LHSWEEP_DEVICE=VOLUME, LHSWEEP_KIND="node")
    after = snapshot()
    facts["after"] = after
    check(VOLUME not in after["dm"] and VOLUME not in after["longhorn"], "the unmounted leftover stayed")


if __name__ == "__main__":
    main()
