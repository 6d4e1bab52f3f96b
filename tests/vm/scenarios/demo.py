"""Guest scenario for `make demo` (needs the .deb): what an operator sees when lhsweep meets a crash.

Two V2 volumes are attached under a running instance-manager, beside a V1 encrypted volume (a
dm-crypt device named like its /dev/longhorn node). The instance-manager is SIGKILLed and its
target torn down while lhsweep is stopped (a node coming back, or lhsweep just installed); then
`lhsweep scan`, `systemctl start lhsweep` (its boot sweep), its journal, `lhsweep scan` again.
The texts land in $LHVM_OUT for dev/demo to print.
"""

from __future__ import annotations

import time

from lhvm import crash, service, volumes
from lhvm.observe import Facts, check, listings, snapshot
from lhvm.proc import run

STALE = ("pvc-3f2a9c1e", "pvc-8d41b7a0")
V1 = "pvc-v1-encrypted"


def listing_text() -> str:
    """`dmsetup ls`, `ls -l /dev/longhorn`, `nvme list-subsys` as one block of text."""
    return "".join(f"$ {command}\n{output}" for command, output in listings().items())


def main() -> None:
    """The demo scenario."""
    facts = Facts()
    manager = crash.begin()
    attached = [volumes.make_v2_volume(name) for name in STALE]
    volumes.make_v1_encrypted(V1)
    crash.crash(manager, *attached)
    facts.file("1-leftovers.txt", listing_text())
    facts.file("2-scan-before.txt", service.scan())
    since_wall = int(time.time())
    service.start()
    journal = run(
        "journalctl",
        "-u",
        service.UNIT,
        "-o",
        "short",
        "--no-hostname",
        "--no-pager",
        f"--since=@{since_wall}",
    )
    facts.file("3-journal.txt", journal.stdout)
    facts.file("4-scan-after.txt", service.scan())
    facts.file("5-left.txt", listing_text())
    after = snapshot()
    facts["after"] = after
    for name in STALE:
        check(name not in after["dm"] and name not in after["longhorn"], f"{name} was not swept")
    check(V1 in after["dm"] and V1 in after["longhorn"], "the V1 encrypted volume was touched")


if __name__ == "__main__":
    main()
