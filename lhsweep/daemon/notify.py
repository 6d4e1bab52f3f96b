"""sd_notify messages (READY, STATUS, STOPPING, RELOADING, WATCHDOG) through sdnotify."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Callable, Optional, Protocol

from lhsweep.render import printable


class NotifySocket(Protocol):
    """What is needed of sdnotify.SystemdNotifier (it handles abstract '@' addresses itself)."""

    def notify(self, state: str) -> None:
        """Send one datagram of newline-separated assignments."""


def _systemd_notifier() -> NotifySocket:
    import sdnotify  # noqa: PLC0415 (stays out of one-shot CLI runs)

    notifier = sdnotify.SystemdNotifier()
    if notifier.socket is not None:
        # A manager that does not read must not block the main loop: drop the datagram instead.
        notifier.socket.setblocking(False)
    sender: NotifySocket = notifier
    return sender


def watchdog_interval(env: Mapping[str, str], pid: int) -> Optional[float]:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), None when not asked for us."""
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class Notifier:
    """Tells the service manager how the daemon is doing; silent when there is no NOTIFY_SOCKET."""

    def __init__(self, env: Mapping[str, str] = os.environ,
                 factory: Callable[[], NotifySocket] = _systemd_notifier) -> None:
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._socket = factory() if self.enabled else None
        self.watchdog_interval = watchdog_interval(env, os.getpid()) if self.enabled else None

    def _send(self, *assignments: str) -> None:
        if self._socket is not None:
            self._socket.notify("\n".join(assignments))

    def ready(self, status: str) -> None:
        """READY=1 with a STATUS line."""
        self._send("READY=1", f"STATUS={printable(status)}")

    def status(self, status: str) -> None:
        """A new STATUS line."""
        self._send(f"STATUS={printable(status)}")

    def reloading(self) -> None:
        """RELOADING=1 while a SIGHUP is handled (READY=1 ends it)."""
        # systemd 253+ wants the CLOCK_MONOTONIC time of the reload with it.
        self._send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}",
                   "STATUS=reloading the configuration")

    def stopping(self, status: str) -> None:
        """STOPPING=1 with a STATUS line."""
        self._send("STOPPING=1", f"STATUS={printable(status)}")

    def watchdog(self) -> None:
        """One WATCHDOG=1 ping."""
        self._send("WATCHDOG=1")
