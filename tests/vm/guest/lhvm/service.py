"""Driving the installed lhsweep service in the guest: configure, start, force sweeps, read its journal."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any, Optional

from lhsweep.journal import Event  # installed by the .deb under test
from lhvm.proc import CommandFailed, run, sh, wait_for

UNIT = "lhsweep.service"
CONFIG = "/etc/lhsweep/lhsweep.toml"
STATE_FILE = "/run/lhsweep/last-sweep.json"
PODS_DIR = "/var/lib/kubelet/pods"
# Short waits for tests; WatchdogSec stays as shipped (60 s).
TEST_SETTINGS: dict[str, dict[str, Any]] = {
    "sweep": {"grace_period": 0, "action_timeout": 10},
    "daemon": {"resync_interval": 10, "debounce": 0.5},
}


def _toml_value(value: Any) -> str:
    """A TOML literal for the few value types the tests use."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def configure(**overrides: dict[str, Any]) -> str:
    """Write lhsweep.toml: TEST_SETTINGS updated by `overrides` (section -> {key: value}); returns it.

    With LHVM_DRY_RUN=1 in the environment (the harness sets it from LHSWEEP_VM_DRY_RUN) the
    service is told `sweep.dry_run = true`: the "fails when lhsweep does nothing" check.
    """
    sections = {name: dict(keys) for name, keys in TEST_SETTINGS.items()}
    for name, keys in overrides.items():
        sections.setdefault(name, {}).update(keys)
    if os.environ.get("LHVM_DRY_RUN") == "1":
        sections["sweep"]["dry_run"] = True
    text = "".join(
        f"[{name}]\n" + "".join(f"{key} = {_toml_value(value)}\n" for key, value in keys.items())
        for name, keys in sections.items()
    )
    os.makedirs(os.path.dirname(CONFIG), exist_ok=True)
    with open(CONFIG, "w") as handle:
        handle.write(text)
    return text


def mark() -> int:
    """Now, in the journal's __MONOTONIC_TIMESTAMP terms (microseconds of CLOCK_MONOTONIC).

    Used instead of a journal cursor: on systemd 252, `journalctl -u UNIT --after-cursor=C`
    missed later entries of the unit when C was a kernel message's cursor.
    """
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)


def entries(after: int = 0, event: Optional[Event] = None) -> list[dict[str, Any]]:
    """lhsweep's journal entries received after `after` (a mark()), optionally of one kind (MESSAGE_ID)."""
    out = run("journalctl", "-u", UNIT, "-o", "json", "--no-pager", timeout=60).stdout
    found = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    # Filtered here: journalctl ORs a field match given after -u into the unit's match group.
    return [
        e
        for e in found
        if int(e["__MONOTONIC_TIMESTAMP"]) > after and (event is None or e.get("MESSAGE_ID") == event.value)
    ]


def matching(found: list[dict[str, Any]], **fields: str) -> list[dict[str, Any]]:
    """The entries of `found` whose fields include `fields`."""
    return [e for e in found if all(e.get(key) == value for key, value in fields.items())]


def wait_entry(event: Event, after: int = 0, timeout: float = 120.0, **fields: str) -> dict[str, Any]:
    """Wait for an entry of kind `event` whose fields include `fields` (e.g. LHSWEEP_DEVICE="pvc-a")."""

    def probe() -> Optional[dict[str, Any]]:
        found = matching(entries(after, event), **fields)
        return found[0] if found else None

    return wait_for(f"lhsweep journal {event.name} {fields}", probe, timeout=timeout, every=1.0)


def fields_of(entry: dict[str, Any]) -> dict[str, Any]:
    """The MESSAGE, MESSAGE_ID and LHSWEEP_* fields of a journal entry (for facts)."""
    return {k: v for k, v in entry.items() if k.startswith(("LHSWEEP_", "MESSAGE")) or k == "PRIORITY"}


def start(timeout: float = 180.0, boot_sweep: bool = True) -> None:
    """systemctl start lhsweep (Type=notify: returns at READY=1, once the boot sweep's plan is made);
    with `boot_sweep`, then wait until that sweep has ended too."""
    done = run("systemctl", "start", UNIT, timeout=timeout)
    if done.returncode != 0:
        log = run("journalctl", "-u", UNIT, "-n", "12", "-o", "cat", "--no-pager").stdout
        raise CommandFailed(f"systemctl start {UNIT}: exit {done.returncode}; its journal ends:\n{log}")
    if boot_sweep:
        wait_boot_sweep(timeout)


def wait_boot_sweep(timeout: float = 180.0) -> dict[str, Any]:
    """Wait until the running daemon (MainPID) has written the state of its first sweep."""
    pid = int(show("MainPID"))
    return wait_for(f"the boot sweep of lhsweep pid {pid}",
                    lambda: last_sweep() if last_sweep().get("pid") == pid else None,
                    timeout=timeout)


def stop() -> None:
    """systemctl stop lhsweep (a no-op when it is not running)."""
    sh("systemctl", "stop", UNIT, timeout=120)


def show(prop: str) -> str:
    """One property of the unit (`systemctl show -P`), e.g. ActiveState, NRestarts, MainPID."""
    return run("systemctl", "show", "-P", prop, UNIT).stdout.strip()


def active_state() -> str:
    """The unit's ActiveState (active, failed, ...)."""
    return show("ActiveState")


def scan() -> str:
    """`lhsweep scan`: what an operator sees (never removes anything)."""
    done = run("lhsweep", "scan", timeout=120)
    return done.stdout + done.stderr


def status() -> str:
    """`lhsweep status`: the daemon's last sweep, as an operator reads it."""
    done = run("lhsweep", "status", timeout=60)
    return done.stdout + done.stderr


def last_sweep() -> dict[str, Any]:
    """The daemon's state file (last-sweep.json); {} before its first sweep."""
    try:
        with open(STATE_FILE) as handle:
            return dict(json.load(handle))
    except (OSError, ValueError):
        return {}


def sweep_number() -> int:
    """The number of the daemon's last finished sweep (0 before the first)."""
    return int(last_sweep().get("sweep_number", 0))


def wait_sweep(after: int, trigger: Optional[str] = None, timeout: float = 90.0) -> dict[str, Any]:
    """Wait for a sweep numbered above `after` (triggered by `trigger`, if given); its state."""

    def probe() -> Optional[dict[str, Any]]:
        state = last_sweep()
        if int(state.get("sweep_number", 0)) <= after:
            return None
        return state if trigger is None or trigger in state.get("triggers", []) else None

    return wait_for(f"an lhsweep sweep after #{after} ({trigger or 'any trigger'})", probe, timeout=timeout)


def force_sweep(how: str = "reload") -> dict[str, Any]:
    """Make the daemon sweep now, by `systemctl reload` (SIGHUP) or by a new kubelet pod directory."""
    before = sweep_number()
    if how == "reload":
        sh("systemctl", "reload", UNIT, timeout=60)
        return wait_sweep(before, "reload")
    os.makedirs(PODS_DIR, exist_ok=True)
    os.mkdir(f"{PODS_DIR}/{uuid.uuid4()}")
    return wait_sweep(before, "pod-dir")
