"""Prometheus metrics for node_exporter's textfile collector, written atomically after each sweep.

The text exposition format (version 0.0.4) is written here, not by prometheus_client: the daemon
only ever needs these few families rendered as text, and the library costs ~3.5 MiB of RSS.
"""

from __future__ import annotations

import os
import threading
from collections import Counter as Tally

from lhsweep.files import replace_file
from lhsweep.model import ActionOutcome, ActionResult, Kind, RuntimeState, SweepReport, Verdict

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Family:
    """One metric family (a gauge or a counter) and its value per tuple of label values."""

    def __init__(self, name: str, help_text: str, kind: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help_text, self.kind, self.label_names = name, help_text, kind, labels
        # An unlabelled family has its one sample from the start (0), as prometheus_client's.
        self._values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}
        self._lock = threading.Lock()

    def set(self, value: float, *labels: str) -> None:
        """Set the sample with these label values."""
        with self._lock:
            self._values[labels] = float(value)

    def inc(self, *labels: str) -> None:
        """Add one to the sample with these label values (0 when it was never set)."""
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + 1.0

    def render(self) -> str:
        """The family's HELP, TYPE and sample lines; a counter's samples end in _total."""
        name = f"{self.name}_total" if self.kind == "counter" else self.name
        lines = [f"# HELP {name} {_escape_help(self.help_text)}", f"# TYPE {name} {self.kind}"]
        with self._lock:
            samples = sorted(self._values.items())
        for values, value in samples:
            pairs = ",".join(f'{k}="{_escape_label(v)}"' for k, v in zip(self.label_names, values))
            lines.append(f"{name}{{{pairs}}} {value!r}" if pairs else f"{name} {value!r}")
        return "\n".join(lines) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return _escape_help(text).replace('"', '\\"')


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
    """The daemon's metrics, rendered as Prometheus text for the file and for /metrics."""

    def __init__(self) -> None:
        self.entries = Family("lhsweep_entries", "Entries of the last sweep by kind and verdict",
                              "gauge", ("kind", "verdict"))
        self.removals = Family("lhsweep_removals", "Leftovers removed since the daemon started",
                               "counter", ("kind",))
        self.failures = Family("lhsweep_removal_failures",
                               "Removals that failed since the daemon started", "counter", ("kind",))
        self.sweeps = Family("lhsweep_sweeps", "Sweeps run since the daemon started", "counter",
                             ("result",))
        self.last_time = Family("lhsweep_last_sweep_timestamp_seconds",
                                "Unix time when the last sweep finished", "gauge")
        self.last_duration = Family("lhsweep_last_sweep_duration_seconds",
                                    "How long the last sweep took", "gauge")
        self.runtime_reachable = Family("lhsweep_runtime_reachable",
                                        "1 when the last sweep could learn the runtime state", "gauge")
        self.stuck = Family("lhsweep_stuck_actions",
                            "dmsetup/nvme children that outlived their timeout and still run", "gauge")
        self.oldest = Family("lhsweep_oldest_entry_age_seconds",
                             "How long the longest-held entry of each verdict has held it", "gauge",
                             ("verdict",))
        self._families = (self.entries, self.removals, self.failures, self.sweeps, self.last_time,
                          self.last_duration, self.runtime_reachable, self.stuck, self.oldest)
        self._ages = AgeTracker()
        for kind in Kind:
            self.removals.set(0, kind.value)
            self.failures.set(0, kind.value)

    def observe(self, report: SweepReport, stuck_now: int, now: float) -> None:
        """Fold one finished sweep into the metrics (its outcomes were counted as they came)."""
        tally = Tally((e.kind.value, e.verdict.value) for e in report.plan.entries)
        for kind in Kind:
            for verdict in Verdict:
                self.entries.set(tally[(kind.value, verdict.value)], kind.value, verdict.value)
        self.sweeps.inc("ok")
        self.last_time.set(now)
        self.last_duration.set(report.duration_s)
        self.runtime_reachable.set(1 if report.runtime.state is RuntimeState.KNOWN else 0)
        self.stuck.set(stuck_now)
        self._ages.update(report, now)
        for verdict in Verdict:
            self.oldest.set(self._ages.oldest(verdict, now), verdict.value)

    def count_outcome(self, outcome: ActionOutcome) -> bool:
        """Count one removal or failure as it happens; True when a counter moved."""
        if outcome.result is ActionResult.REMOVED:
            self.removals.inc(outcome.kind.value)
        elif outcome.result is ActionResult.FAILED:
            self.failures.inc(outcome.kind.value)
        else:
            return False
        return True

    def observe_error(self, stuck_now: int) -> None:
        """Count a sweep that raised instead of reporting (lock busy, a bug)."""
        self.sweeps.inc("error")
        self.stuck.set(stuck_now)

    def render(self) -> str:
        """Every family in the Prometheus text format (families that have no sample yet too)."""
        return "".join(f.render() for f in self._families)

    def write(self, path: str) -> bool:
        """Replace the text file at `path` atomically; False when its directory does not exist."""
        if not path or not os.path.isdir(os.path.dirname(path)):
            return False
        replace_file(path, self.render())
        return True
