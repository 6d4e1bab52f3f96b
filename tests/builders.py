"""Entries, outcomes and sweep reports for testing what reports on a sweep (journal, metrics, state
file, JSON schemas) without planning one, and one sample report to share."""

from __future__ import annotations

from typing import Optional

from lhsweep.model import (
    ActionOutcome,
    ActionResult,
    Entry,
    Identity,
    Kind,
    Plan,
    RuntimeView,
    SweepReport,
    Verdict,
)
from tests.inventories import runtime_with

STALE_REASON = "no live V2 instance-manager"


def entry(name: str, verdict: Verdict = Verdict.STALE, reason: str = STALE_REASON, kind: Kind = Kind.DM,
          holders: tuple[str, ...] = ()) -> Entry:
    """An entry for `name` (also its volume) with this verdict, as the plan would make it."""
    return Entry(kind, name, verdict, reason, Identity(name), volume=name, holders=holders)


def outcome(name: str, result: ActionResult, detail: str, kind: Kind = Kind.DM,
            stuck: bool = False, duration_s: float = 0.0) -> ActionOutcome:
    """How the removal of `name` (also its volume) ended."""
    return ActionOutcome(kind, name, result, detail, volume=name, duration_s=duration_s, stuck=stuck)


def report(*entries: Entry, outcomes: tuple[ActionOutcome, ...] = (), runtime: Optional[RuntimeView] = None,
           dry_run: bool = False, duration_s: float = 0.0) -> SweepReport:
    """A sweep report of these entries and outcomes; the runtime answered with no instance-manager."""
    return SweepReport(runtime or runtime_with(), Plan(entries), outcomes, dry_run=dry_run,
                       duration_s=duration_s)


def sample_report(runtime: Optional[RuntimeView] = None) -> SweepReport:
    """Stale, busy and foreign entries of two kinds; a removal of each kind done, one failed and stuck."""
    entries = (entry("pvc-1"),
               entry("pvc-2", Verdict.BUSY, "pvc-2 is mounted on /mnt/x"),
               entry("pvc-3"),
               entry("pvc-1", kind=Kind.NODE),
               entry("vg0-data", Verdict.FOREIGN, "LVM"))
    outcomes = (outcome("pvc-1", ActionResult.REMOVED, "dmsetup exited 0"),
                outcome("pvc-3", ActionResult.FAILED, "dmsetup timed out", stuck=True),
                outcome("pvc-1", ActionResult.REMOVED, "unlinked", kind=Kind.NODE))
    return report(*entries, outcomes=outcomes, runtime=runtime, duration_s=0.25)
