"""Guest scenario (needs the .deb): `lhsweep --host-root` run the way a container runs it, with its
own empty /run and the host's root below /mnt/h, whose var/run is Debian's absolute link to /run.
A Longhorn lock held on the host's /run/longhorn makes it skip the volume; released, it sweeps.
With the host's /proc missing below the root, mounts and open files are unknown: nothing removed."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from lhvm import crash, service, volumes
from lhvm.observe import Facts, check, snapshot
from lhvm.proc import run, wait_for

VOLUME = "pvc-hostroot"
LOCK = f"/run/longhorn/spdk-{VOLUME}.lock"
ROOT = "/mnt/h"
# The host's root below ROOT (with /proc, /sys, /dev, /run), and over lhsweep's own /run an empty
# tmpfs, as in a container: an absolute link followed outside the root lands there.
CONTAINER = (
    "mount --make-rprivate / && mkdir -p {root} && mount --rbind / {root} && {extra}"
    "mount -t tmpfs tmpfs /run && exec lhsweep --host-root {root} {command} --json"
)


def lhsweep_in_container(command: str, extra: str = "") -> dict[str, Any]:
    """Run `lhsweep --host-root /mnt/h <command> --json` in a private mount namespace; its JSON."""
    script = CONTAINER.format(root=ROOT, extra=extra, command=command)
    done = run("unshare", "-m", "sh", "-c", script, timeout=120)
    check(done.returncode in (0, 1), f"lhsweep {command}: exit {done.returncode}: {done.stderr[-400:]}")
    return dict(json.loads(done.stdout))


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    """kind:name -> verdict of a report's entries for the volume."""
    return {f"{e['kind']}:{e['name']}": e["verdict"] for e in report["entries"] if e.get("volume") == VOLUME}


def main() -> None:
    """The host-root scenario."""
    facts = Facts()
    # The CRI socket seen from the private namespace (its own /run is empty there).
    manager = crash.begin(cri={"endpoints": [f"unix://{ROOT}/run/containerd/containerd.sock"]})
    volume = volumes.make_v2_volume(VOLUME, ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    crash.crash(manager, volume, wait_gone=True)
    facts["var_run"] = os.readlink("/var/run")
    # Every step's result is recorded before any is checked: a reverted fix shows in all of them.
    facts["no_proc"] = no_proc = lhsweep_in_container("scan", extra=f"umount -l {ROOT}/proc && ")
    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    holder = subprocess.Popen(["flock", "--no-fork", LOCK, "sleep", "600"])
    try:
        wait_for(f"{LOCK} to be held", lambda: run("flock", "-n", "-E", "7", LOCK, "true").returncode == 7
                 or None, timeout=30)
        facts["locked"] = locked = lhsweep_in_container("sweep")
        facts["dm_while_locked"] = dm_while_locked = snapshot()["dm"]
    finally:
        holder.kill()
        holder.wait()
    facts["released"] = released = lhsweep_in_container("sweep")
    after = snapshot()
    facts["after"] = after
    check(set(verdicts(no_proc).values()) == {"unknown"}, f"without /proc: {verdicts(no_proc)}")
    check(any("mounts unknown" in e["reason"] for e in no_proc["entries"]), "mounts unknown not named")
    check({a["result"] for a in locked["actions"]} == {"skipped"},
          f"actions while the host's lock was held: {locked['actions']}")
    check(any(LOCK in a["detail"] for a in locked["actions"]), "the host's lock is not named")
    check(VOLUME in dm_while_locked, "removed while Longhorn's lock was held")
    check({a["result"] for a in released["actions"]} == {"removed"}, f"after release: {released['actions']}")
    check(VOLUME not in after["dm"] and VOLUME not in after["longhorn"], "not swept once the lock was free")
    service.configure()  # the daemon's usual endpoints again for the scenarios after this one


if __name__ == "__main__":
    main()
