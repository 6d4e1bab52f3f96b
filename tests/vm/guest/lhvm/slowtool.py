"""A `dmsetup remove` that takes as long as lhsweep lets it: a wrapper first on the service's PATH
(scenarios using it run lhsweep with `sweep.removal = "tools"`, so that removals go through dmsetup).

While armed, `dmsetup remove NAME` for a chosen NAME (or every NAME) writes NAME to the entered
log and sleeps instead of removing; lhsweep's action timeout kills it (each such removal costs a
whole sweep.action_timeout, as a stuck NVMe disconnect does). Every other call goes to the real
dmsetup. tests/vm/scenarios/hung.py makes a hang that survives SIGKILL (D state) instead.
"""

from __future__ import annotations

import os

WRAPPER = "/usr/local/sbin/dmsetup"
ARMED = "/run/lhvm/slow-remove"  # one name a line, or "*"
ENTERED = "/run/lhvm/slow-remove-entered"  # one name a line per sleeping call

SCRIPT = f"""#!/bin/sh
# lhvm slow-removal wrapper: `dmsetup remove [--] NAME` sleeps while {ARMED} lists NAME or '*'.
name="$2"
[ "$name" = -- ] && name="$3"
if [ "$1" = remove ] && [ -r {ARMED} ] && grep -qxF -e "$name" -e '*' {ARMED}; then
    echo "$name" >> {ENTERED}
    exec sleep 3600
fi
exec /sbin/dmsetup "$@"
"""


def arm(*names: str) -> None:
    """Make `dmsetup remove` of `names` (of every device when none is given) sleep."""
    os.makedirs(os.path.dirname(ARMED), exist_ok=True)
    with open(ARMED, "w") as handle:
        handle.write("".join(f"{n}\n" for n in names) or "*\n")
    with open(WRAPPER, "w") as handle:
        handle.write(SCRIPT)
    os.chmod(WRAPPER, 0o755)


def entered() -> list[str]:
    """The names whose removal has started sleeping, in order."""
    try:
        with open(ENTERED) as handle:
            return handle.read().split()
    except FileNotFoundError:
        return []


def disarm() -> None:
    """The real dmsetup is in charge again (calls already sleeping go on until killed)."""
    for path in (ARMED, WRAPPER, ENTERED):
        if os.path.exists(path):
            os.unlink(path)
