"""What the daemon does with a finished sweep: journal, metrics file, state file, STATUS line."""

from __future__ import annotations

import time
from typing import Optional

from lhsweep.config import Config
from lhsweep.daemon.worker import SweepResult
from lhsweep.errors import LockBusyError
from lhsweep.journal import DEBUG, ERR, INFO, NOTICE, WARNING, DecisionLog, Event, Journal
from lhsweep.metrics import Metrics
from lhsweep.model import ActionOutcome, Entry, RuntimeState, SweepReport
from lhsweep.state import build_state, summary_line, write_state
from lhsweep.tools import StuckProcess, ToolRunner


class Reporter:
    """Counts sweeps and publishes each one's outcome; `status` is the current STATUS line."""

    def __init__(self, journal: Journal, runner: ToolRunner) -> None:
        self.journal = journal
        self.runner = runner
        self.decisions = DecisionLog(journal)
        self.metrics = Metrics()
        self.sweep_number = 0
        self.status = "starting: boot sweep running"
        self._warned: dict[str, str] = {}
        self._dry_run = False
        self._last_failure = ""

    def planned(self, report: SweepReport) -> None:
        """A running sweep made its plan: log its decisions before any action starts."""
        self._dry_run = report.dry_run
        self.decisions.log_plan(report)

    def acted(self, config: Config, entry: Entry, outcome: ActionOutcome) -> None:
        """Journal and count one outcome as it happens, so that a kill loses no record of it."""
        self.decisions.log_outcome(entry, outcome, self._dry_run)
        if self.metrics.count_outcome(outcome):
            self._write_metrics(config)

    def sweep_done(self, config: Config, result: SweepResult, retry_in: Optional[float] = None,
                   stopping: bool = False) -> None:
        """Publish `result`: journal entries, metrics, state file, status."""
        self.sweep_number += 1
        self._log_reaped()
        stuck = self.runner.stuck()
        if result.report is None:
            self._sweep_failed(config, result, retry_in, stuck)
            return
        report = result.report
        status = summary_line(report, self.sweep_number, len(stuck))
        if report.runtime.state is RuntimeState.UNKNOWN and retry_in is not None and not stopping:
            status += f"; retrying in {retry_in:.0f}s, nothing removed meanwhile"
        self.status = status
        self.decisions.log_summary(report, self.sweep_number, status, result.triggers)
        self._last_failure = ""
        self.metrics.observe(report, len(stuck), time.time())
        self._write_metrics(config)
        state = build_state(report, sweep_number=self.sweep_number, triggers=result.triggers,
                            status=status, stuck=stuck)
        try:
            write_state(config.state_dir, state)
        except OSError as exc:
            self._warn_once("state", f"cannot write the state file in {config.state_dir}: {exc}")

    def _sweep_failed(self, config: Config, result: SweepResult, retry_in: Optional[float],
                      stuck: tuple[StuckProcess, ...]) -> None:
        retry = f"; retrying in {retry_in:.0f}s" if retry_in is not None else ""
        error = result.error
        if isinstance(error, LockBusyError):
            self.status = f"sweep {self.sweep_number} skipped: another sweep holds the lock{retry}"
            self.journal.emit(INFO, self.status, Event.SWEEP_SUMMARY, LHSWEEP_REASON=str(error))
        else:
            what = f"{type(error).__name__}: {error}"
            self.status = f"sweep {self.sweep_number} failed: {what}{retry}"
            # The same failure again (it is retried with backoff) is not news.
            again = what == self._last_failure
            self.journal.emit(DEBUG if again else ERR, self.status, Event.SWEEP_SUMMARY,
                              LHSWEEP_REASON=what)
            self._last_failure = what
        self.metrics.observe_error(len(stuck))
        self._write_metrics(config)

    def _log_reaped(self) -> None:
        for process in self.runner.reap():
            self.journal.emit(NOTICE, f"abandoned {' '.join(process.argv)} (pid {process.pid}) "
                              "has ended", Event.STUCK, LHSWEEP_PID=str(process.pid))

    def _write_metrics(self, config: Config) -> None:
        try:
            written = self.metrics.write(config.metrics_file)
        except OSError as exc:
            self._warn_once("metrics", f"cannot write {config.metrics_file}: {exc}")
            return
        if not written and config.metrics_file:
            self._warn_once("metrics", f"metrics not written: the directory of "
                            f"{config.metrics_file} does not exist")

    def _warn_once(self, key: str, message: str) -> None:
        if self._warned.get(key) != message:
            self.journal.emit(WARNING, message, Event.LIFECYCLE)
        self._warned[key] = message
