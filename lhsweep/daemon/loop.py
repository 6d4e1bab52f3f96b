"""The daemon's main loop: one selector over every trigger source, timers, one sweep at a time."""

from __future__ import annotations

import selectors
import signal
import time
from dataclasses import dataclass, replace
from typing import Callable, Optional, Protocol

from lhsweep import config as config_mod
from lhsweep.config import Config
from lhsweep.daemon.cri_watch import CriWatcher
from lhsweep.daemon.notify import Notifier
from lhsweep.daemon.report import Reporter
from lhsweep.daemon.timers import Backoff, Debouncer, Timers
from lhsweep.daemon.wakeup import WakePipe
from lhsweep.daemon.worker import ProgressPipe, SweepFn, SweepResult, SweepWorker, TrackedRunner
from lhsweep.errors import ConfigError, PrivilegeError, StateError
from lhsweep.host import HostRoot
from lhsweep.journal import ERR, INFO, NOTICE, WARNING, Event, Journal, is_busy_leftover
from lhsweep.model import RuntimeState, SweepReport
from lhsweep.progress import Progress
from lhsweep.tools import KILL_GRACE_S

# Bound on waiting for the running sweep at SIGTERM (systemd's stop timeout is 90 s by default).
STOP_WAIT_CAP_S = 30.0
# Extra allowance on top of one action's and the CRI calls' timeouts before a busy worker
# counts as wedged (and the watchdog is no longer fed).
STALL_SLACK_S = 60.0
# A sweep for a device leaving its grace period comes this long after it does.
GRACE_SLACK_S = 0.5
# The main loop's timers, handled in this order when several are due: name -> the trigger it
# raises (the watchdog raises none). docs/architecture.md says what sets each.
TIMERS: dict[str, Optional[str]] = {
    "watchdog": None,
    "retry": "retry",
    "busy-recheck": "busy-recheck",
    "grace-end": "grace-end",
    "resync": "resync",
}


class Source(Protocol):
    """A trigger source the selector polls: readable fd, then handle() names the trigger."""

    def fileno(self) -> int:
        """The fd to poll."""

    def handle(self) -> Optional[str]:
        """Consume what is readable; a trigger name or None."""

    def close(self) -> None:
        """Release the fd (and any thread)."""


@dataclass(frozen=True)
class Parts:
    """How the daemon builds its pieces; tests swap in their own."""

    sweeper: Callable[[str, TrackedRunner, Progress], SweepFn]
    pod_watcher: Callable[[str], Source]
    uevents: Callable[[], Source]
    cri_watcher: Callable[[Config], CriWatcher]
    notifier: Notifier
    journal: Journal
    # Raises StateError/PrivilegeError when a state directory cannot hold the sweep lock.
    state_dir_check: Callable[[str], None] = lambda _state_dir: None


class Daemon:
    """Boot sweep, READY once its plan is made, then sweeps on triggers until SIGTERM/SIGINT.

    READY=1 does not wait for the boot sweep's removals: each is bounded by sweep.action_timeout,
    but a few stuck ones in a row would outlast systemd's start timeout and hold up kubelet,
    which is ordered after this unit. They go on in the worker, journaled one by one.
    """

    def __init__(self, config_path: str, host_root: str, config: Config, parts: Parts) -> None:
        self.config_path = config_path
        self.host_root = host_root
        self.host = HostRoot(host_root)
        self.config = config
        self.parts = parts
        self.journal = parts.journal
        self.notifier = parts.notifier
        self.runner = TrackedRunner(config.sweep_action_timeout)
        self.progress = ProgressPipe()
        self.worker = SweepWorker(parts.sweeper(host_root, self.runner, self.progress))
        self.reporter = Reporter(self.journal, self.runner)
        self.selector = selectors.DefaultSelector()
        self.signals = WakePipe()
        self.debounce = Debouncer(config.daemon_debounce)
        self.retry = Backoff(1.0, 60.0)
        self.sources: dict[str, Optional[Source]] = {"pods": None, "uevents": None, "cri": None}
        self._source_errors: dict[str, str] = {}
        self.timers = Timers(TIMERS)
        self.ready = False
        self.stopping = False

    # ------------------------------------------------------------ lifecycle

    def run(self) -> int:
        """Serve until asked to stop; the exit code."""
        self.worker.start()
        self._install_signals()
        self.selector.register(self.signals, selectors.EVENT_READ, self._on_signals)
        self.selector.register(self.progress, selectors.EVENT_READ, self._on_progress)
        self.selector.register(self.worker, selectors.EVENT_READ, self._on_sweep_done)
        self._open_sources()
        self.journal.emit(INFO, f"lhsweep daemon started (config {self.config_path}, "
                          f"host root {self.host_root})", Event.LIFECYCLE)
        now = time.monotonic()
        self.timers.set("resync", now + self.config.daemon_resync_interval)
        if self.notifier.watchdog_interval:
            self.timers.set("watchdog", now)
        self._start_sweep(("boot",))
        while not self.stopping:
            for key, _ in self.selector.select(self._timeout(time.monotonic())):
                key.data()
            self._on_timers(time.monotonic())
        return self._shutdown()

    def _install_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, _note_signal)
        signal.set_wakeup_fd(self.signals.write_fd, warn_on_full_buffer=False)

    def _shutdown(self) -> int:
        self.notifier.stopping("stopping: " + self.reporter.status)
        self.journal.emit(INFO, "lhsweep daemon stopping", Event.LIFECYCLE)
        for name in list(self.sources):
            self._close_source(name)
        self.runner.stopping = True
        if self.worker.busy:
            wait = min(self.config.sweep_action_timeout + KILL_GRACE_S + 1.0, STOP_WAIT_CAP_S)
            result = self.worker.collect(timeout=wait)
            self._on_progress()  # what it did after the loop's last look: journaled and counted
            if result is None:
                self.journal.emit(WARNING, f"a sweep still runs after {wait:.0f}s: abandoned; "
                                  "no new action was started", Event.LIFECYCLE)
            else:
                self.reporter.sweep_done(self.config, result, stopping=True)
        self.worker.close()
        signal.set_wakeup_fd(-1)
        return 0

    # ------------------------------------------------------------ sources

    def _open_sources(self) -> None:
        """Open every trigger source not open yet; one that fails is retried at the next resync."""
        openers: dict[str, Callable[[], Source]] = {
            "pods": lambda: self.parts.pod_watcher(self.host.path(self.config.kubelet_pods_dir)),
            "uevents": self.parts.uevents,
            "cri": lambda: self.parts.cri_watcher(self.config),
        }
        for name, opener in openers.items():
            if self.sources[name] is not None:
                continue
            try:
                source = opener()
            except Exception as exc:  # any failure: keep serving, the resync is the safety net
                self._source_failed(name, f"cannot open: {exc}")
                continue
            self.sources[name] = source
            self._source_errors.pop(name, None)
            self.selector.register(source, selectors.EVENT_READ, lambda n=name: self._on_source(n))

    def _source_failed(self, name: str, why: str) -> None:
        if self._source_errors.get(name) != why:
            self.journal.emit(WARNING, f"trigger source {name}: {why}; relying on the resync "
                              f"every {self.config.daemon_resync_interval:.0f}s", Event.LIFECYCLE)
        self._source_errors[name] = why

    def _close_source(self, name: str) -> None:
        source = self.sources[name]
        if source is None:
            return
        self.selector.unregister(source)
        source.close()
        self.sources[name] = None

    def _on_source(self, name: str) -> None:
        source = self.sources[name]
        if source is None:
            return
        try:
            trigger = source.handle()
        except Exception as exc:  # a broken source is closed and reopened at the next resync
            self._close_source(name)
            self._source_failed(name, f"failed: {exc}")
            self._trigger(f"{name}-lost")
            return
        if trigger is not None:
            self._trigger(trigger)

    # ------------------------------------------------------------ triggers and timers

    def _trigger(self, reason: str) -> None:
        self.debounce.trigger(reason, time.monotonic())

    def _timeout(self, now: float) -> float:
        deadlines = [d for d in (self.timers.next_deadline(), self.debounce.deadline) if d is not None]
        if self.worker.busy and self.debounce.deadline is not None:
            deadlines.remove(self.debounce.deadline)  # waits for the sweep's end, not a timer
        return max(0.0, min(deadlines, default=now + self.config.daemon_resync_interval) - now)

    def _on_timers(self, now: float) -> None:
        for name in self.timers.take_due(now):
            if name == "watchdog":
                self._feed_watchdog(now)
            elif name == "resync":
                self.timers.set("resync", now + self.config.daemon_resync_interval)
                self._open_sources()
            trigger = TIMERS[name]
            if trigger is not None:
                self._trigger(trigger)
        if self.debounce.due(now) and not self.worker.busy and not self.stopping:
            self._start_sweep(self.debounce.take())

    def _feed_watchdog(self, now: float) -> None:
        interval = self.notifier.watchdog_interval or 1.0
        self.timers.set("watchdog", now + interval)
        stalled = self.stalled_for(now)
        if stalled is None:
            self.notifier.watchdog()
        else:
            self.notifier.status(f"sweep made no progress for {stalled:.0f}s: watchdog not fed")

    def stalled_for(self, now: float) -> Optional[float]:
        """Seconds the running sweep has made no progress beyond any bounded step, else None."""
        if not self.worker.busy:
            return None
        c = self.config
        sockets = len(c.cri_endpoints or config_mod.WELL_KNOWN_CRI_SOCKETS)
        limit = c.sweep_action_timeout + KILL_GRACE_S + 3 * c.cri_timeout * sockets + STALL_SLACK_S
        last = max(self.runner.last_progress, self.worker.busy_since or 0.0)
        return now - last if now - last > limit else None

    # ------------------------------------------------------------ sweeps

    def _start_sweep(self, triggers: tuple[str, ...]) -> None:
        self.runner.last_progress = time.monotonic()
        self.worker.submit(self.config, triggers)

    def _on_progress(self) -> None:
        """Journal and count what the running sweep did so far; READY once the boot plan is made."""
        for step in self.progress.drain():
            if isinstance(step, SweepReport):
                self.reporter.planned(step)
                # Without removals the sweep ends at once: READY then carries its summary.
                if not self.ready and not self.stopping and step.plan.removals:
                    self._become_ready(f"boot sweep planned: {len(step.plan.removals)} removal(s) "
                                       "under way")
            else:
                self.reporter.acted(self.config, *step)

    def _become_ready(self, status: str) -> None:
        self.ready = True
        self.notifier.ready(status)

    def _on_sweep_done(self) -> None:
        result = self.worker.collect()
        if result is None:
            return
        self._on_progress()  # the last steps may not have been read yet
        now = time.monotonic()
        self.timers.set("resync", now + self.config.daemon_resync_interval)
        self._schedule_grace_end(result.report, now)
        self._schedule_retry(result, now)
        self._schedule_busy_recheck(result.report, now)
        self.reporter.sweep_done(self.config, result, retry_in=self._retry_in(now))
        cri = self.sources["cri"]
        if result.report is not None and isinstance(cri, CriWatcher):
            cri.observed(result.report.runtime)
        if not self.ready:
            self._become_ready(self.reporter.status)
        else:
            self.notifier.status(self.reporter.status)

    def _schedule_grace_end(self, report: Optional[SweepReport], now: float) -> None:
        """A device kept only for its youth: look again as soon as it grows out of the grace period."""
        grace_end = report.plan.next_grace_end_ns if report is not None else None
        if grace_end is None:
            self.timers.set("grace-end", None)
            return
        grace_left = grace_end / 1e9 - time.time()
        self.timers.set("grace-end", now + max(grace_left, 0.0) + GRACE_SLACK_S)

    def _schedule_busy_recheck(self, report: Optional[SweepReport], now: float) -> None:
        """While busy Longhorn leftovers remain, look again soon: freeing one makes no uevent."""
        busy = report is not None and any(is_busy_leftover(e) for e in report.plan.entries)
        self.timers.set("busy-recheck", now + self.config.daemon_busy_recheck_interval if busy else None)

    def _schedule_retry(self, result: SweepResult, now: float) -> None:
        """Retry with backoff after a sweep that could not learn the runtime or did not run."""
        if result.report is not None and result.report.runtime.state is RuntimeState.KNOWN:
            self.retry.reset()
            self.timers.set("retry", None)
            return
        self.timers.set("retry", now + self.retry.next_delay())

    def _retry_in(self, now: float) -> Optional[float]:
        retry_at = self.timers.at("retry")
        return None if retry_at is None else retry_at - now

    # ------------------------------------------------------------ signals

    def _on_signals(self) -> None:
        for signum in self.signals.drain():
            if signum in (signal.SIGTERM, signal.SIGINT):
                self.stopping = True
            elif signum == signal.SIGHUP and not self.stopping:
                self._reload()

    def _reload(self) -> None:
        self.notifier.reloading()
        try:
            new = config_mod.load(self.config_path)
            if new.state_dir != self.config.state_dir:  # checked at start; a new one here
                self.parts.state_dir_check(new.state_dir)
        except (ConfigError, PrivilegeError, StateError) as exc:
            self.journal.emit(ERR, f"configuration reload failed, keeping the old one: {exc}",
                              Event.CONFIG_RELOAD_FAILED, LHSWEEP_REASON=str(exc),
                              LHSWEEP_CONFIG=self.config_path)
            self._announce(f"{self.reporter.status}; reload failed: {exc}")
            return
        old, self.config = self.config, new
        self.runner.timeout = new.sweep_action_timeout
        self.debounce.delay = new.daemon_debounce
        if new.kubelet_root != old.kubelet_root:
            self._close_source("pods")
        if _cri_settings(new) != _cri_settings(old):
            self._close_source("cri")
        self._open_sources()
        resync_at = self.timers.at("resync")
        soonest = time.monotonic() + new.daemon_resync_interval
        self.timers.set("resync", soonest if resync_at is None else min(resync_at, soonest))
        self.journal.emit(NOTICE, f"configuration reloaded from {self.config_path}",
                          Event.LIFECYCLE, LHSWEEP_CONFIG=self.config_path)
        self._trigger("reload")
        self._announce(self.reporter.status)

    def _announce(self, status: str) -> None:
        """READY=1 (ends RELOADING=1) once booted; before the boot sweep ends only a STATUS."""
        if self.ready:
            self.notifier.ready(status)
        else:
            self.notifier.status(status)


def _cri_settings(config: Config) -> Config:
    """The part of a config the CRI watcher depends on (other fields blanked)."""
    return replace(Config(), cri_endpoints=config.cri_endpoints, cri_timeout=config.cri_timeout,
                   cri_poll_interval=config.cri_poll_interval)


def _note_signal(signum: int, frame: object) -> None:
    """Signal handler: the wakeup fd carries the signal number to the main loop."""
