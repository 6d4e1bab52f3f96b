"""Running commands and waiting for conditions inside the guest, with bounded timeouts."""

from __future__ import annotations

import subprocess
import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


class CommandFailed(RuntimeError):
    """A guest command exited non-zero (the message names it and carries its output)."""


def sh(*argv: str, check: bool = True, timeout: float = 60.0, stdin: Optional[str] = None) -> str:
    """Run `argv`, return its stdout; raise CommandFailed with stderr when `check` and it fails."""
    done = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise CommandFailed(
            f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout


def run(*argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `argv` and return the whole result (exit code, stdout, stderr), never raising on exit code."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def wait_for(what: str, probe: Callable[[], Optional[T]], timeout: float = 60.0, every: float = 0.2) -> T:
    """Poll `probe` until it returns something not None/False; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def read(path: str, default: str = "") -> str:
    """A sysfs/procfs file's text without its trailing newline ('' or `default` when absent)."""
    try:
        with open(path) as handle:
            return handle.read().rstrip("\n")
    except OSError:
        return default
