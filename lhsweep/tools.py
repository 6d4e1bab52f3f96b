"""Bounded runs of host tools (dmsetup, nvme) and of the kernel-call helper: a stuck child is
reported and abandoned, never awaited (rule never-block-main-loop)."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional

from lhsweep.opshelper import parse_reply, request_line

HELPER_SCRIPT = Path(__file__).with_name("opshelper.py")

# After SIGKILL a child normally dies at once; one in D state (a dead NVMe target) may not.
KILL_GRACE_S = 1.0


class ToolResult(NamedTuple):
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


class StuckProcess(NamedTuple):
    """A child that did not die after SIGKILL."""

    argv: tuple[str, ...]
    pid: int
    since: float


class ToolRunner:
    """Runs commands with a bounded wait and remembers the children it had to abandon."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._stuck: dict[int, tuple[subprocess.Popen[Any], StuckProcess]] = {}
        self._lock = threading.Lock()
        self._helper: Optional[subprocess.Popen[bytes]] = None

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
                # Whatever the locale; bytes that are no UTF-8 (a dm name) are replaced, not raised.
                encoding="utf-8",
                errors="replace",
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

    def call_helper(self, label: tuple[str, ...], request: dict[str, Any],
                    timeout: Optional[float] = None) -> ToolResult:
        """Have the kernel-call helper (lhsweep/opshelper.py) do `request`, waiting at most `timeout`.

        The helper lives across calls (one process for a whole sweep, not one per device) until
        close_helper(); one that does not answer in time is killed, or abandoned as stuck under
        `label` when it cannot die, and the next call starts a new one. The result reads like a
        tool's: returncode 0 when the call succeeded, else 1 with the kernel's error as stderr.
        """
        limit = self.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            helper = self._ensure_helper()
            assert helper.stdin is not None
            helper.stdin.write(request_line(request))
            helper.stdin.flush()
        except OSError as exc:
            self.close_helper()
            return ToolResult(label, None, "", f"cannot run the kernel-call helper: {exc.strerror}", 0.0)
        line = self._read_line(helper, started + limit)
        if line is None:
            self._helper = None
            return self._kill_helper(helper, label, started)
        return self._helper_result(label, line, time.monotonic() - started)

    def close_helper(self) -> None:
        """Let the helper end (it exits when its stdin closes); no-op when none runs."""
        helper, self._helper = self._helper, None
        if helper is None:
            return
        for stream in (helper.stdin, helper.stdout):
            if stream is not None:
                stream.close()
        try:
            helper.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            self._kill_helper(helper, ("opshelper",), time.monotonic())

    def start_helper(self) -> None:
        """Start the helper now, without waiting for it, so that its interpreter's start overlaps
        other work; the first call_helper() then finds it running."""
        with contextlib.suppress(OSError):  # call_helper() tries again and reports the error
            self._ensure_helper()

    @property
    def helper_running(self) -> bool:
        """True while a helper process is started and not yet ended or closed."""
        return self._helper is not None and self._helper.poll() is None

    def _ensure_helper(self) -> subprocess.Popen[bytes]:
        if self._helper is None or self._helper.poll() is not None:
            self._helper = subprocess.Popen(
                [sys.executable, "-I", "-S", str(HELPER_SCRIPT)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self._helper

    @staticmethod
    def _read_line(helper: subprocess.Popen[bytes], deadline: float) -> Optional[bytes]:
        """One answer line from the helper, None when it does not come before `deadline`."""
        assert helper.stdout is not None
        fd = helper.stdout.fileno()
        chunks: list[bytes] = []
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    return None
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                chunks.append(chunk)
                if chunk.endswith(b"\n"):
                    return b"".join(chunks)

    @staticmethod
    def _helper_result(label: tuple[str, ...], line: bytes, duration: float) -> ToolResult:
        try:
            code, error = parse_reply(line)
        except ValueError:
            return ToolResult(label, 1, "", "the kernel-call helper answered garbage", duration)
        return ToolResult(label, 0 if code == 0 else 1, "", error, duration)

    def _kill_helper(self, helper: subprocess.Popen[bytes], label: tuple[str, ...],
                     started: float) -> ToolResult:
        """Kill a helper that did not answer in time; abandon it when it cannot die."""
        try:
            os.killpg(helper.pid, signal.SIGKILL)
        except OSError:
            helper.kill()
        try:
            helper.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            self._abandon(helper, label)
            return ToolResult(label, None, "", "", time.monotonic() - started, True, True)
        return ToolResult(label, None, "", "", time.monotonic() - started, True)

    def _abandon(self, proc: subprocess.Popen[Any], argv: tuple[str, ...]) -> None:
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
