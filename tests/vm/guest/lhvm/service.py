"""Driving the installed lhsweep service in the guest: configure, start, read its journal by MESSAGE_ID."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from lhsweep.journal import Event  # installed by the .deb under test
from lhvm.proc import CommandFailed, run, sh, wait_for

UNIT = "lhsweep.service"
CONFIG = "/etc/lhsweep/lhsweep.toml"


def configure(text: str) -> None:
    """Replace lhsweep's configuration file (e.g. a zero grace period and short intervals for tests)."""
    os.makedirs(os.path.dirname(CONFIG), exist_ok=True)
    with open(CONFIG, "w") as handle:
        handle.write(text)


def entries(after: str = "", event: Optional[Event] = None) -> list[dict[str, Any]]:
    """lhsweep's journal entries (after cursor `after`), optionally only those of one kind (MESSAGE_ID)."""
    argv = ["journalctl", "-u", UNIT, "-o", "json", "--no-pager"]
    if after:
        argv.append(f"--after-cursor={after}")
    out = run(*argv, timeout=60).stdout
    found = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    # Filtered here: journalctl ORs a field match given after -u into the unit's match group.
    return [e for e in found if event is None or e.get("MESSAGE_ID") == event.value]


def wait_entry(event: Event, after: str = "", timeout: float = 120.0, **fields: str) -> dict[str, Any]:
    """Wait for an entry of kind `event` whose fields include `fields` (e.g. LHSWEEP_DEVICE="pvc-a")."""

    def probe() -> Optional[dict[str, Any]]:
        for entry in entries(after, event):
            if all(entry.get(key) == value for key, value in fields.items()):
                return entry
        return None

    return wait_for(f"lhsweep journal {event.name} {fields}", probe, timeout=timeout, every=1.0)


def start(timeout: float = 180.0) -> None:
    """systemctl start lhsweep (Type=notify: returns once READY=1, i.e. after the boot sweep)."""
    done = run("systemctl", "start", UNIT, timeout=timeout)
    if done.returncode != 0:
        log = run("journalctl", "-u", UNIT, "-n", "12", "-o", "cat", "--no-pager").stdout
        raise CommandFailed(f"systemctl start {UNIT}: exit {done.returncode}; its journal ends:\n{log}")


def stop() -> None:
    """systemctl stop lhsweep."""
    sh("systemctl", "stop", UNIT, timeout=120)


def active_state() -> str:
    """The unit's ActiveState (active, failed, ...)."""
    return run("systemctl", "show", "-P", "ActiveState", UNIT).stdout.strip()


def scan() -> str:
    """`lhsweep scan`: what an operator sees (never removes anything)."""
    done = run("lhsweep", "scan", timeout=120)
    return done.stdout + done.stderr
