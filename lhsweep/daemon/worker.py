"""The sweep worker: one thread, one sweep at a time, results handed back through a pipe."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from lhsweep.config import Config
from lhsweep.daemon.wakeup import WakePipe
from lhsweep.model import ActionOutcome, Entry, SweepReport
from lhsweep.progress import Progress
from lhsweep.tools import ToolResult, ToolRunner

SweepFn = Callable[[Config], SweepReport]


@dataclass(frozen=True)
class SweepResult:
    """How one sweep ended: a report, or the error it raised."""

    report: Optional[SweepReport]
    error: Optional[Exception]
    triggers: tuple[str, ...]
    started: float
    finished: float


@dataclass(frozen=True)
class _Job:
    config: Config
    triggers: tuple[str, ...]


class SweepWorker:
    """Runs `sweep` in its own thread so the main loop never waits on dmsetup or nvme."""

    def __init__(self, sweep: SweepFn) -> None:
        self._sweep = sweep
        self._jobs: queue.Queue[Optional[_Job]] = queue.Queue(maxsize=1)
        self._results: queue.Queue[SweepResult] = queue.Queue()
        self._pipe = WakePipe()
        self.busy_since: Optional[float] = None
        self._thread = threading.Thread(target=self._work, name="lhsweep-sweep", daemon=True)

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def fileno(self) -> int:
        """Readable when a sweep has finished."""
        return self._pipe.fileno()

    @property
    def busy(self) -> bool:
        """True from submit() until its result is collected."""
        return self.busy_since is not None

    def submit(self, config: Config, triggers: tuple[str, ...]) -> None:
        """Start one sweep (it runs once start() was called); the caller checks `busy` first."""
        if self.busy:
            raise RuntimeError("a sweep is already running")
        self.busy_since = time.monotonic()
        self._jobs.put_nowait(_Job(config, triggers))

    def collect(self, timeout: float = 0.0) -> Optional[SweepResult]:
        """The finished sweep's result, waiting up to `timeout` seconds; None if none yet."""
        self._pipe.drain()
        try:
            result = self._results.get(timeout=timeout) if timeout > 0 else \
                self._results.get_nowait()
        except queue.Empty:
            return None
        self.busy_since = None
        return result

    def close(self) -> None:
        """Let the thread end after the sweep it runs (it is a daemon thread: exit abandons it)."""
        try:
            self._jobs.put_nowait(None)
        except queue.Full:
            return

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            started = time.monotonic()
            report: Optional[SweepReport] = None
            error: Optional[Exception] = None
            try:
                report = self._sweep(job.config)
            except Exception as exc:  # reported by the main loop; the worker must survive a bug
                error = exc
            self._results.put(SweepResult(report, error, job.triggers, started, time.monotonic()))
            self._pipe.poke()


Step = Union[SweepReport, tuple[Entry, ActionOutcome]]


class ProgressPipe(Progress):
    """Hands a running sweep's steps to the main loop as they happen; readable when one waits."""

    def __init__(self) -> None:
        self._steps: queue.SimpleQueue[Step] = queue.SimpleQueue()
        self._pipe = WakePipe()

    def fileno(self) -> int:
        """Readable when a step waits."""
        return self._pipe.fileno()

    def planned(self, report: SweepReport) -> None:
        """Called in the worker: the plan is made."""
        self._steps.put(report)
        self._pipe.poke()

    def acted(self, entry: Entry, outcome: ActionOutcome) -> None:
        """Called in the worker: one action ended."""
        self._steps.put((entry, outcome))
        self._pipe.poke()

    def drain(self) -> list[Step]:
        """The steps reported since the last drain, oldest first."""
        self._pipe.drain()
        steps = []
        while not self._steps.empty():
            steps.append(self._steps.get_nowait())
        return steps


class TrackedRunner(ToolRunner):
    """A ToolRunner that records when it last made progress and refuses new runs once stopping."""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout)
        self.last_progress = time.monotonic()
        self.stopping = False

    def run(self, argv: Union[list[str], tuple[str, ...]],
            timeout: Optional[float] = None) -> ToolResult:
        """Run `argv` like ToolRunner.run, unless the daemon is stopping."""
        return self._tracked(tuple(argv), lambda: super(TrackedRunner, self).run(argv, timeout))

    def call_helper(self, label: tuple[str, ...], request: dict[str, Any],
                    timeout: Optional[float] = None) -> ToolResult:
        """Like ToolRunner.call_helper, unless the daemon is stopping."""
        return self._tracked(label, lambda: super(TrackedRunner, self).call_helper(label, request, timeout))

    def _tracked(self, label: tuple[str, ...], call: Callable[[], ToolResult]) -> ToolResult:
        """`call()` with progress noted before and after; refused once stopping."""
        if self.stopping:
            return ToolResult(label, None, "", "not started: lhsweep is stopping", 0.0)
        self.last_progress = time.monotonic()
        try:
            return call()
        finally:
            self.last_progress = time.monotonic()
