"""Guest scenario (needs the .deb): a backup initiator's node on a live Longhorn namespace, mounted
only in a private mount namespace (`unshare -m`) whose process stays: busy naming the mount and
its namespace, nothing of it removed; swept once that namespace is gone."""

from __future__ import annotations

import subprocess

from lhvm import crash, nvmet, service, volumes
from lhvm.observe import Facts, check, snapshot
from lhvm.proc import read, sh

from lhsweep.journal import Event  # installed by the .deb under test

CONTROL = "pvc-ctl-priv"
BACKUP = "pvc-backup-priv"
MOUNT_POINT = "/mnt/lhvm-private"


def mount_privately(device: str) -> subprocess.Popen[str]:
    """A process in its own mount namespace that mounts `device` there and stays."""
    holder = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f"mkdir -p {MOUNT_POINT} && mount {device} {MOUNT_POINT} && echo mounted && exec sleep 600"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    check(holder.stdout.readline().strip() == "mounted", "the private mount failed")
    return holder


def main() -> None:
    """The private-mount scenario."""
    facts = Facts()
    manager = crash.begin()
    service.start()
    since = service.mark()
    control = volumes.make_v2_volume(CONTROL, ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    nqn = nvmet.engine_nqn(BACKUP)
    nvmet.export(nqn)
    namespace = nvmet.connect(nqn, crash.CTRL_LOSS_TMO)
    node = volumes.make_node(BACKUP, read(f"/sys/class/block/{namespace}/dev").strip())
    sh("mkfs.ext4", "-q", "-F", "-E", "nodiscard", node, timeout=120)
    holder = mount_privately(node)
    facts["holder_pid"] = holder.pid
    facts["nqn"] = nqn
    facts["in_pid1_mountinfo"] = MOUNT_POINT in read("/proc/1/mountinfo")
    try:
        crash.crash(manager, control, wait_gone=True)
        busy = service.wait_entry(Event.BUSY, since, timeout=60, LHSWEEP_DEVICE=BACKUP, LHSWEEP_KIND="node")
        facts["busy_entry"] = service.fields_of(busy)
        service.wait_entry(Event.REMOVED, since, timeout=60, LHSWEEP_DEVICE=CONTROL, LHSWEEP_KIND="dm")
        facts["sweeps_while_mounted"] = [service.force_sweep()["sweep_number"] for _ in range(2)]
        held = snapshot()
        facts["held"] = held
        facts["removed_while_mounted"] = [
            e for e in service.entries(since, Event.REMOVED) if e.get("LHSWEEP_DEVICE") in (BACKUP, nqn)]
        check(BACKUP in held["longhorn"] and nqn in held["nvme"], "removed under the private mount")
        check(f"mounted on {MOUNT_POINT} in the mount namespace of pid {holder.pid}"
              in busy.get("LHSWEEP_HOLDER", ""), f"the mount is not named: {busy.get('LHSWEEP_HOLDER')}")
    finally:
        holder.kill()
        holder.wait()
    gone = service.mark()
    service.force_sweep()
    service.wait_entry(Event.REMOVED, gone, timeout=60, LHSWEEP_DEVICE=BACKUP, LHSWEEP_KIND="node")
    service.wait_entry(Event.REMOVED, gone, timeout=60, LHSWEEP_DEVICE=nqn, LHSWEEP_KIND="nvme")
    after = snapshot()
    facts["after"] = after
    check(BACKUP not in after["longhorn"] and nqn not in after["nvme"], "not swept once unmounted")


if __name__ == "__main__":
    main()
