"""Prometheus metrics for node_exporter's textfile collector, written atomically after each sweep."""

from __future__ import annotations

import os
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile

from lhsweep.model import ActionOutcome, ActionResult, Kind, RuntimeState, SweepReport, Verdict


class AgeTracker:
    """Remembers since when each (kind, name) has held a verdict, to export the oldest age."""

    def __init__(self) -> None:
        self._since: dict[tuple[str, str, str], float] = {}

    def update(self, report: SweepReport, now: float) -> None:
        """Keep first-seen times of entries still present with the same verdict; drop the rest."""
        current = {(e.kind.value, e.name, e.verdict.value) for e in report.plan.entries}
        self._since = {key: self._since.get(key, now) for key in current}

    def oldest(self, verdict: Verdict, now: float) -> float:
        """Seconds the longest-held entry of `verdict` has held it (0 when there is none)."""
        ages = [now - t for (_, _, v), t in self._since.items() if v == verdict.value]
        return max(ages, default=0.0)


class Metrics:
    """The daemon's metrics in their own registry (never the process-global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.entries = Gauge("lhsweep_entries", "Entries of the last sweep by kind and verdict",
                             ["kind", "verdict"], registry=r)
        self.removals = Counter("lhsweep_removals", "Leftovers removed since the daemon started",
                                ["kind"], registry=r)
        self.failures = Counter("lhsweep_removal_failures",
                                "Removals that failed since the daemon started", ["kind"],
                                registry=r)
        self.sweeps = Counter("lhsweep_sweeps", "Sweeps run since the daemon started",
                              ["result"], registry=r)
        self.last_time = Gauge("lhsweep_last_sweep_timestamp_seconds",
                               "Unix time when the last sweep finished", registry=r)
        self.last_duration = Gauge("lhsweep_last_sweep_duration_seconds",
                                   "How long the last sweep took", registry=r)
        self.runtime_reachable = Gauge("lhsweep_runtime_reachable",
                                       "1 when the last sweep could learn the runtime state",
                                       registry=r)
        self.stuck = Gauge("lhsweep_stuck_actions",
                           "dmsetup/nvme children that outlived their timeout and still run",
                           registry=r)
        self.oldest = Gauge("lhsweep_oldest_entry_age_seconds",
                            "How long the longest-held entry of each verdict has held it",
                            ["verdict"], registry=r)
        self._ages = AgeTracker()
        for kind in Kind:
            self.removals.labels(kind.value)
            self.failures.labels(kind.value)

    def observe(self, report: SweepReport, stuck_now: int, now: float) -> None:
        """Fold one finished sweep into the metrics (its outcomes were counted as they came)."""
        tally = Tally((e.kind.value, e.verdict.value) for e in report.plan.entries)
        for kind in Kind:
            for verdict in Verdict:
                self.entries.labels(kind.value, verdict.value).set(tally[(kind.value, verdict.value)])
        self.sweeps.labels("ok").inc()
        self.last_time.set(now)
        self.last_duration.set(report.duration_s)
        self.runtime_reachable.set(1 if report.runtime.state is RuntimeState.KNOWN else 0)
        self.stuck.set(stuck_now)
        self._ages.update(report, now)
        for verdict in Verdict:
            self.oldest.labels(verdict.value).set(self._ages.oldest(verdict, now))

    def count_outcome(self, outcome: ActionOutcome) -> bool:
        """Count one removal or failure as it happens; True when a counter moved."""
        if outcome.result is ActionResult.REMOVED:
            self.removals.labels(outcome.kind.value).inc()
        elif outcome.result is ActionResult.FAILED:
            self.failures.labels(outcome.kind.value).inc()
        else:
            return False
        return True

    def observe_error(self, stuck_now: int) -> None:
        """Count a sweep that raised instead of reporting (lock busy, a bug)."""
        self.sweeps.labels("error").inc()
        self.stuck.set(stuck_now)

    def write(self, path: str) -> bool:
        """Replace the text file at `path` atomically; False when its directory does not exist."""
        if not path or not os.path.isdir(os.path.dirname(path)):
            return False
        write_to_textfile(path, self.registry)
        return True
