"""Bounded runs of dmsetup/nvme: a stuck child is reported, abandoned (rule never-block-main-loop)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

# After SIGKILL a child normally dies at once; one in D state (a dead NVMe target) may not.
KILL_GRACE_S = 1.0


@dataclass(frozen=True)
class ToolResult:
    """How one tool run ended; `stuck` means it outlived the timeout and was abandoned."""

    argv: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    stuck: bool = False

    @property
    def ok(self) -> bool:
        """True when the tool exited 0 in time."""
        return self.returncode == 0 and not self.timed_out

    def summary(self) -> str:
        """One line saying how the run ended, for reasons and logs."""
        if self.stuck:
            return f"{self.argv[0]} still running after {self.duration_s:.1f}s and SIGKILL: abandoned"
        if self.timed_out:
            return f"{self.argv[0]} timed out after {self.duration_s:.1f}s and was killed"
        if self.returncode is None:
            return self.stderr
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        last = text[-1] if text else ""
        return f"{self.argv[0]} exited {self.returncode}" + (f": {last}" if last else "")


@dataclass(frozen=True)
class StuckProcess:
    """A child that did not die after SIGKILL."""

    argv: tuple[str, ...]
    pid: int
    since: float


class ToolRunner:
    """Runs commands with a bounded wait and remembers the children it had to abandon."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._stuck: dict[int, tuple[subprocess.Popen[str], StuckProcess]] = {}
        self._lock = threading.Lock()

    def run(self, argv: list[str] | tuple[str, ...], timeout: float | None = None) -> ToolResult:
        """Run `argv` (no shell), wait at most `timeout` seconds, never longer than that plus a grace."""
        limit = self.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        except OSError as exc:
            return ToolResult(tuple(argv), None, "", f"cannot run {argv[0]}: {exc.strerror}", 0.0)
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            return self._kill(proc, tuple(argv), started)
        return ToolResult(tuple(argv), proc.returncode, out, err, time.monotonic() - started)

    def _kill(self, proc: subprocess.Popen[str], argv: tuple[str, ...], started: float) -> ToolResult:
        """Kill a child that ran too long; abandon it when it does not die."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        try:
            out, err = proc.communicate(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            self._abandon(proc, argv)
            return ToolResult(argv, None, "", "", time.monotonic() - started, True, True)
        return ToolResult(argv, proc.returncode, out, err, time.monotonic() - started, True)

    def _abandon(self, proc: subprocess.Popen[str], argv: tuple[str, ...]) -> None:
        with self._lock:
            self._stuck[proc.pid] = (proc, StuckProcess(argv, proc.pid, time.time()))

    def reap(self) -> tuple[StuckProcess, ...]:
        """Collect abandoned children that have finished since; return those."""
        finished = []
        with self._lock:
            for pid, (proc, info) in list(self._stuck.items()):
                if proc.poll() is not None:
                    finished.append(info)
                    del self._stuck[pid]
        return tuple(finished)

    def stuck(self) -> tuple[StuckProcess, ...]:
        """The abandoned children still running."""
        self.reap()
        with self._lock:
            return tuple(info for _, info in self._stuck.values())
