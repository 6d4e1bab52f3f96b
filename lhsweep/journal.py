"""Structured logging: every decision as a journal entry with a fixed MESSAGE_ID, or one stderr line."""

from __future__ import annotations

import enum
import importlib
import json
import os
import sys
from typing import Callable, Optional, TextIO

from lhsweep.model import ActionOutcome, ActionResult, Entry, Kind, RuntimeState, SweepReport, Verdict
from lhsweep.render import printable

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "lhsweep"

# syslog priorities, as journald's PRIORITY field takes them
ERR, WARNING, NOTICE, INFO, DEBUG = 3, 4, 5, 6, 7
_LEVEL_NAMES = {ERR: "error", WARNING: "warning", NOTICE: "notice", INFO: "info", DEBUG: "debug"}

# journal.send(MESSAGE, MESSAGE_ID=..., **FIELDS): the systemd-python signature.
Sender = Callable[..., None]


class Event(str, enum.Enum):
    """Kinds of journal entry; the value is the fixed MESSAGE_ID that systemd/lhsweep.catalog explains."""

    REMOVED = "670df04e22d94fc990ffe1c243001f36"
    BUSY = "ab1c3dcc40e3421fb08dacbecea57c79"
    FAILED = "3237a19eb0594c8ebd9868176b19ab77"
    RUNTIME_UNKNOWN = "cf91c97f6249444b90d067457366168e"
    SWEEP_SUMMARY = "a32fe8be679d47a4afb8718b5d984c4f"
    STUCK = "83e60a80aa3347b7a390fd3f02255290"
    CONFIG_RELOAD_FAILED = "0c4602257ecf44eea2c522670b1aedf0"
    DECISION = "d2ca765fc8d246f2b27f86fa375b4197"
    LIFECYCLE = "7573e2326fd4433abb5031d805d2ddb7"


class Journal:
    """Sends entries to journald through `sender`, or writes one readable line each to `stream`."""

    def __init__(self, sender: Optional[Sender], stream: TextIO = sys.stderr,
                 verbose: bool = False) -> None:
        self._sender = sender
        self._stream = stream
        self.verbose = verbose

    @property
    def to_journal(self) -> bool:
        """True when entries go to journald rather than to the stream."""
        return self._sender is not None

    def emit(self, priority: int, message: str, event: Optional[Event] = None,
             **fields: str) -> None:
        """Log one entry; `fields` are LHSWEEP_* names (upper case) with text values."""
        if priority >= DEBUG and not self.verbose:
            return
        clean = {k: printable(v) for k, v in fields.items() if v != ""}
        if self._sender is not None:
            extra = {"MESSAGE_ID": event.value} if event is not None else {}
            self._sender(printable(message), PRIORITY=str(priority),
                         SYSLOG_IDENTIFIER=IDENTIFIER, **extra, **clean)
            return
        self._stream.write(stderr_line(priority, message, clean) + "\n")
        self._stream.flush()


def stderr_line(priority: int, message: str, fields: dict[str, str]) -> str:
    """The stderr form: `lhsweep: <level>: <message> [key=value ...]` on one line."""
    parts = []
    for key, value in fields.items():
        name = key[len("LHSWEEP_"):].lower() if key.startswith("LHSWEEP_") else key.lower()
        text = printable(value)
        parts.append(f"{name}={json.dumps(text) if (' ' in text or not text) else text}")
    suffix = f" [{' '.join(parts)}]" if parts else ""
    return f"{IDENTIFIER}: {_LEVEL_NAMES.get(priority, str(priority))}: {printable(message)}{suffix}"


def open_journal(target: str, verbose: bool = False,
                 socket_path: str = JOURNAL_SOCKET) -> Journal:
    """A Journal for `--log-target` auto|journal|stderr; auto picks journald when its socket exists."""
    if target not in ("auto", "journal", "stderr"):
        raise ValueError(f"log target {target!r}: expected auto, journal or stderr")
    if target == "stderr" or (target == "auto" and not os.path.exists(socket_path)):
        return Journal(None, sys.stderr, verbose)
    try:
        journal = importlib.import_module("systemd.journal")  # optional off systemd hosts
    except ImportError:
        return Journal(None, sys.stderr, verbose)
    return Journal(journal.send, sys.stderr, verbose)


def entry_fields(entry: Entry) -> dict[str, str]:
    """The LHSWEEP_* fields of one planned entry."""
    return {"LHSWEEP_DEVICE": entry.name, "LHSWEEP_KIND": entry.kind.value,
            "LHSWEEP_VERDICT": entry.verdict.value, "LHSWEEP_REASON": entry.reason,
            "LHSWEEP_VOLUME": entry.volume}


def outcome_fields(outcome: ActionOutcome) -> dict[str, str]:
    """The LHSWEEP_* fields of one action result."""
    return {"LHSWEEP_DEVICE": outcome.name, "LHSWEEP_KIND": outcome.kind.value,
            "LHSWEEP_RESULT": outcome.result.value, "LHSWEEP_REASON": outcome.detail,
            "LHSWEEP_VOLUME": outcome.volume, "LHSWEEP_DURATION": f"{outcome.duration_s:.3f}"}


def removed_fields(entry: Entry, outcome: ActionOutcome) -> dict[str, str]:
    """A REMOVED entry's fields: the outcome's, plus why the object was judged stale."""
    return {**outcome_fields(outcome), "LHSWEEP_VERDICT_REASON": entry.reason}


class DecisionLog:
    """Logs a sweep's decisions: problems every time, quiet verdicts (live, foreign) only on change.

    A sweep is logged in three steps as it happens: its plan, each action's outcome, its summary.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._seen: dict[tuple[Kind, str], Verdict] = {}
        self._told_once: set[tuple[Kind, str, str]] = set()

    def log_plan(self, report: SweepReport) -> None:
        """Log the runtime state, every entry worth an entry, and the host's problems."""
        if report.runtime.state is RuntimeState.UNKNOWN:
            self.journal.emit(WARNING, f"container runtime unknown, nothing removed: "
                              f"{report.runtime.reason}", Event.RUNTIME_UNKNOWN,
                              LHSWEEP_REASON=report.runtime.reason)
        for entry in report.plan.entries:
            self._log_entry(entry, report)
        for problem in report.problems:
            self.journal.emit(WARNING, f"sweep problem: {problem}", Event.DECISION,
                              LHSWEEP_REASON=problem)
        self._seen = {(e.kind, e.name): e.verdict for e in report.plan.entries}
        self._told_once &= {(e.kind, e.name, e.reason) for e in report.plan.entries}

    def log_summary(self, report: SweepReport, sweep_number: int, summary: str,
                    triggers: tuple[str, ...] = ()) -> None:
        """The sweep's summary line (with its duration and triggers): info when it did or found
        anything, else debug."""
        loud = any(o.result is not ActionResult.SKIPPED for o in report.outcomes) or any(
            e.verdict in (Verdict.UNKNOWN, Verdict.STALE) or is_busy_leftover(e)
            for e in report.plan.entries)
        self.journal.emit(INFO if loud or sweep_number == 1 else DEBUG, summary,
                          Event.SWEEP_SUMMARY, LHSWEEP_SWEEP=str(sweep_number),
                          LHSWEEP_DURATION=f"{report.duration_s:.3f}",
                          LHSWEEP_TRIGGERS=" ".join(triggers))

    def _log_entry(self, entry: Entry, report: SweepReport) -> None:
        changed = self._seen.get((entry.kind, entry.name)) is not entry.verdict
        fields = entry_fields(entry)
        what = f"{entry.kind.value} {entry.name}"
        if is_busy_leftover(entry):
            self.journal.emit(WARNING, f"{what} is a busy leftover, left alone: {entry.reason}",
                              Event.BUSY, LHSWEEP_HOLDER="; ".join(entry.holders), **fields)
        elif entry.verdict is Verdict.BUSY:
            self._log_in_use(entry, what, fields)
        elif entry.verdict is Verdict.UNKNOWN:
            # With the runtime unknown every entry is unknown for the one reason logged above.
            runtime_down = report.runtime.state is RuntimeState.UNKNOWN
            priority = WARNING if changed or not runtime_down else DEBUG
            self.journal.emit(priority, f"{what}: cannot decide, left alone: {entry.reason}",
                              Event.DECISION, **fields)
        elif entry.verdict is Verdict.STALE and report.dry_run:
            self.journal.emit(NOTICE, f"{what} is stale, dry run: would remove ({entry.reason})",
                              Event.DECISION, **fields)
        elif entry.verdict is not Verdict.STALE:
            self.journal.emit(INFO if changed else DEBUG,
                              f"{what} is {entry.verdict.value}: {entry.reason}",
                              Event.DECISION, **fields)

    def _log_in_use(self, entry: Entry, what: str, fields: dict[str, str]) -> None:
        """Longhorn's, but used only by devices that are not leftovers: said once, quietly."""
        key = (entry.kind, entry.name, entry.reason)
        self.journal.emit(DEBUG if key in self._told_once else INFO,
                          f"{what} is in use by devices that are not leftovers, left alone: "
                          f"{entry.reason}", Event.DECISION, **fields)
        self._told_once.add(key)

    def log_outcome(self, entry: Entry, outcome: ActionOutcome, dry_run: bool) -> None:
        """Log one action's outcome as soon as it is known."""
        what = f"{outcome.kind.value} {outcome.name}"
        fields = outcome_fields(outcome)
        if outcome.result is ActionResult.REMOVED:
            self.journal.emit(NOTICE, f"removed stale {what} ({entry.reason}; {outcome.detail})",
                              Event.REMOVED, **removed_fields(entry, outcome))
        elif outcome.stuck:
            self.journal.emit(ERR, f"removing {what} is stuck: {outcome.detail}", Event.STUCK,
                              **fields)
        elif outcome.result is ActionResult.FAILED:
            self.journal.emit(ERR, f"removing {what} failed: {outcome.detail}", Event.FAILED,
                              **fields)
        elif not dry_run:
            self.journal.emit(INFO, f"{what} not removed this sweep: {outcome.detail}",
                              Event.DECISION, **fields)


def is_busy_leftover(entry: Entry) -> bool:
    """A busy entry that is a Longhorn leftover itself, not only in use by foreign or live devices.

    The plan names each device holding a namespace with that device's verdict in brackets.
    """
    if entry.verdict is not Verdict.BUSY:
        return False
    not_leftovers = tuple(f"({v.value})" for v in (Verdict.FOREIGN, Verdict.LIVE))
    return entry.kind is not Kind.NVME or not entry.holders or \
        not all(h.endswith(not_leftovers) for h in entry.holders)
