"""Guest scenario (needs the .deb): a backup initiator's /dev/longhorn node straight on a Longhorn
namespace whose target is alive, held open by another user's process, the instance-manager crashed:
busy naming the pid, nothing of it removed; swept once the reader exits."""

from __future__ import annotations

import subprocess

from lhvm import crash, nvmet, service, volumes
from lhvm.observe import Facts, check, snapshot
from lhvm.proc import read

from lhsweep.journal import Event  # installed by the .deb under test

CONTROL = "pvc-ctl-open"
BACKUP = "pvc-backup-open"  # the lvol's node a backup initiator makes


def open_reader(path: str) -> subprocess.Popen[bytes]:
    """`sleep` as user nobody with `path` open on its stdin (opened here as root, then handed over)."""
    with open(path, "rb") as handle:
        return subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                 "sleep", "600"], stdin=handle)


def main() -> None:
    """The held-open scenario."""
    facts = Facts()
    manager = crash.begin()
    service.start()
    since = service.mark()
    control = volumes.make_v2_volume(CONTROL, ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    nqn = nvmet.engine_nqn(BACKUP)
    nvmet.export(nqn)  # alive throughout: only the instance-manager dies
    namespace = nvmet.connect(nqn, crash.CTRL_LOSS_TMO)
    volumes.make_node(BACKUP, read(f"/sys/class/block/{namespace}/dev").strip())
    reader = open_reader(f"/dev/longhorn/{BACKUP}")
    facts["reader_pid"] = reader.pid
    facts["nqn"] = nqn
    try:
        crash.crash(manager, control, wait_gone=True)
        busy = service.wait_entry(Event.BUSY, since, timeout=60, LHSWEEP_DEVICE=BACKUP, LHSWEEP_KIND="node")
        facts["busy_entry"] = service.fields_of(busy)
        service.wait_entry(Event.REMOVED, since, timeout=60, LHSWEEP_DEVICE=CONTROL, LHSWEEP_KIND="dm")
        facts["sweeps_while_open"] = [service.force_sweep()["sweep_number"] for _ in range(2)]
        held = snapshot()
        facts["held"] = held
        facts["removed_while_open"] = [
            e for e in service.entries(since, Event.REMOVED) if e.get("LHSWEEP_DEVICE") in (BACKUP, nqn)]
        check(BACKUP in held["longhorn"] and nqn in held["nvme"], "removed under the reader")
        check(f"pid {reader.pid} (sleep)" in busy.get("LHSWEEP_HOLDER", ""),
              f"the reader is not named: {busy.get('LHSWEEP_HOLDER')}")
    finally:
        reader.kill()
        reader.wait()
    gone = service.mark()
    service.force_sweep()
    facts["removed_node"] = service.fields_of(
        service.wait_entry(Event.REMOVED, gone, timeout=60, LHSWEEP_DEVICE=BACKUP, LHSWEEP_KIND="node"))
    service.wait_entry(Event.REMOVED, gone, timeout=60, LHSWEEP_DEVICE=nqn, LHSWEEP_KIND="nvme")
    after = snapshot()
    facts["after"] = after
    check(BACKUP not in after["longhorn"] and nqn not in after["nvme"], "not swept once the reader exited")


if __name__ == "__main__":
    main()
