"""What a running sweep tells as it goes: its plan once made, then each action's outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lhsweep.model import ActionOutcome, Entry, SweepReport

if TYPE_CHECKING:  # the journal is the one-shot sweep's and the daemon's, not the scan's
    from lhsweep.journal import DecisionLog


class Progress:
    """Told of a sweep's steps as they happen: the plan once made, then each action's outcome."""

    def planned(self, report: SweepReport) -> None:
        """The runtime and host were read and the plan made; no action has started yet."""

    def acted(self, entry: Entry, outcome: ActionOutcome) -> None:
        """One planned removal ended (removed, failed or skipped)."""


class LoggedProgress(Progress):
    """Journals the plan once made and each outcome as it comes (rule log-every-decision: nothing
    lost to a kill)."""

    def __init__(self, log: DecisionLog, dry_run: bool) -> None:
        self.log = log
        self.dry_run = dry_run

    def planned(self, report: SweepReport) -> None:
        """Log the plan's decisions."""
        self.log.log_plan(report)

    def acted(self, entry: Entry, outcome: ActionOutcome) -> None:
        """Log the outcome."""
        self.log.log_outcome(entry, outcome, self.dry_run)
