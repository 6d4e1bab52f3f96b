"""Guest benchmark, item 4: SIGKILL of the instance-manager to the last stale device gone, via the service."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from lhvm import nvmet, runtime, service, volumes
from lhvm.observe import Facts, dm_names, longhorn_nodes
from lhvm.proc import sh, wait_for

from lhsweep.journal import Event  # installed by the .deb under test

ROUNDS = 3
VOLUMES = 3
POLL_S = 0.02
CONFIG_PATH = Path("/etc/lhsweep/lhsweep.toml")
# Debug entries too: the summaries of sweeps that removed nothing (one raised by an early trigger,
# say, before the runtime saw the exit) are kept only then.
VERBOSE_DROP_IN = Path("/etc/systemd/system/lhsweep.service.d/bench-verbose.conf")
CONFIG = """[cri]
poll_interval = 1.0
[sweep]
grace_period = 0
[daemon]
debounce = 0.25
"""


def leftovers(names: list[str], nqns: list[str]) -> list[str]:
    """What of the volumes is still on the host: dm devices, nodes, NVMe controllers."""
    left = [n for n in names if n in set(dm_names())]
    left += [f"/dev/longhorn/{n}" for n in names if n in set(longhorn_nodes())]
    left += [q for q in nqns if nvmet.controllers(q)]
    return left


def one_round(round_no: int) -> dict[str, Any]:
    """Start an instance-manager, attach volumes, let the service see them live, kill, time the clean-up."""
    manager = runtime.run_instance_manager()
    made = [volumes.make_v2_volume(f"pvc-r{round_no}-{i}", ctrl_loss_tmo=30) for i in range(VOLUMES)]
    names, nqns = [v.name for v in made], [v.nqn for v in made]
    time.sleep(2.0)  # the service sees them live (made after the instance-manager started)
    assert not [n for n in names if n not in dm_names()], "the service removed live volumes"
    killed = service.mark()
    started = time.monotonic()
    os.kill(manager.pid, signal.SIGKILL)
    for volume in made:
        nvmet.crash(volume.target)  # the SPDK target lived in the instance-manager
    wait_for("the leftovers to go", lambda: not leftovers(names, nqns), timeout=120, every=POLL_S)
    gone = time.monotonic() - started
    runtime.delete_instance_manager(manager)
    return {"seconds": gone, "volumes": VOLUMES, **removal_times(killed, names),
            "sweeps": sweeps_after(killed)}


def sweeps_after(killed: int) -> list[dict[str, Any]]:
    """The service's sweeps that ended after the kill: start (seconds after it), duration, triggers,
    from the summaries (stamped as each sweep ends, with its duration)."""
    found = []
    for entry in service.entries(killed, Event.SWEEP_SUMMARY):
        took = float(entry.get("LHSWEEP_DURATION", "nan"))
        end = (int(entry["__MONOTONIC_TIMESTAMP"]) - killed) / 1e6
        found.append({"start_s": end - took, "duration_s": took,
                      "triggers": entry.get("LHSWEEP_TRIGGERS", ""), "summary": entry["MESSAGE"]})
    return found


def removal_times(killed: int, names: list[str]) -> dict[str, Any]:
    """From the journal's REMOVED entries (stamped as each removal ends, with its duration): when
    the first removal started after the kill, when the last ended, and the seconds per kind."""
    ends, starts, by_kind = [], [], {}
    for entry in service.entries(killed, Event.REMOVED):
        if entry.get("LHSWEEP_VOLUME") not in names:
            continue
        end = (int(entry["__MONOTONIC_TIMESTAMP"]) - killed) / 1e6
        took = float(entry["LHSWEEP_DURATION"])
        ends.append(end)
        starts.append(end - took)
        kind = entry["LHSWEEP_KIND"]
        by_kind[kind] = by_kind.get(kind, 0.0) + took
    if not ends:
        return {}
    return {"first_removal_start_s": min(starts), "last_removal_end_s": max(ends), "removal_s": by_kind}


def main() -> None:
    """Rounds of kill-and-clean with lhsweep.service running."""
    facts = Facts()
    CONFIG_PATH.parent.mkdir(parents=True, exist_ok=True)
    CONFIG_PATH.write_text(CONFIG)
    runtime.start_containerd()
    nvmet.load_modules()
    VERBOSE_DROP_IN.parent.mkdir(parents=True, exist_ok=True)
    VERBOSE_DROP_IN.write_text("[Service]\nExecStart=\n"
                               "ExecStart=/usr/bin/python3 -m lhsweep.daemon --verbose\n")
    sh("systemctl", "daemon-reload", timeout=120)
    sh("systemctl", "restart", "lhsweep.service", timeout=120)
    facts["service"] = sh("systemctl", "is-active", "lhsweep.service").strip()
    try:
        facts["rounds"] = [one_round(i) for i in range(ROUNDS)]
        facts["journal_tail"] = sh("journalctl", "-u", "lhsweep.service", "-n", "30", "--no-pager",
                                   timeout=60)
    finally:
        VERBOSE_DROP_IN.unlink()
        sh("systemctl", "daemon-reload", timeout=120)


if __name__ == "__main__":
    main()
