"""Turns CRI container events (or, where the runtime lacks them, polling) into sweep triggers.

The gRPC stream blocks, so it is read in a thread of its own that only ever wakes the main
loop through a pipe. Only a stop or delete of a known instance-manager container matters: a
new instance-manager also creates a pod directory, which the inotify watch reports. While
polling, the thread also waits on pidfds of the running instance-managers' main processes
(daemon/pidfds.py), so that an exit wakes it at once rather than at the next poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Callable, Optional, Protocol

from lhsweep.config import Config
from lhsweep.daemon.pidfds import ExitWatch
from lhsweep.daemon.timers import Backoff
from lhsweep.daemon.wakeup import WakePipe
from lhsweep.errors import RuntimeQueryError
from lhsweep.model import RuntimeState, RuntimeView

# A stream that broke after running this long may have lost events: sweep once to catch up.
STREAM_HEALTHY_S = 5.0
# An instance-manager's process exited: its runtime says so a moment later (the shim reaps it
# first). Until then ask this often, for at most this long; the runtime's answer is what triggers.
EXIT_REPOLL_S = 0.1
EXIT_REPOLL_FOR_S = 10.0
_ENDING_EVENTS = ("stopped", "deleted")


class EventStream(Protocol):
    """A GetContainerEvents call: (container id, event type name) pairs, cancellable elsewhere."""

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """The events as they come; raises RuntimeQueryError when the stream fails."""

    def cancel(self) -> None:
        """End the iteration from another thread."""


StreamFactory = Callable[[str, float], EventStream]
QueryFn = Callable[[Config], RuntimeView]


def open_event_stream(endpoint: str, timeout: float) -> EventStream:
    """GetContainerEvents on `endpoint` (a missing socket is the stream's first error)."""
    from lhsweep.cri.events import ContainerEventStream  # noqa: PLC0415 (grpc only in the daemon)

    return ContainerEventStream(endpoint, timeout)


def is_unimplemented(exc: RuntimeQueryError) -> bool:
    """True when the runtime answered UNIMPLEMENTED (it has no event stream)."""
    from lhsweep.cri.client import CriUnimplementedError  # noqa: PLC0415

    return isinstance(exc, CriUnimplementedError)


def fingerprint(view: RuntimeView) -> tuple[object, ...]:
    """What polling compares between two answers: state and every instance-manager's identity."""
    ims = sorted((im.sandbox_id, im.sandbox_state, im.container_id or "", im.container_state or "")
                 for im in view.instance_managers)
    return (view.state.value, tuple(ims))


class CriWatcher:
    """A thread reading CRI events (or polling) that wakes the main loop when a sweep is due.

    The stream is opened on the endpoint the last sweep found to be kubelet's runtime, once a
    sweep has found one.
    """

    def __init__(self, config: Config, stream_factory: StreamFactory, query: QueryFn,
                 unimplemented: Callable[[RuntimeQueryError], bool] = is_unimplemented,
                 backoff: Optional[Backoff] = None, exits: Optional[ExitWatch] = None) -> None:
        self._config = config
        self._open = stream_factory
        self._query = query
        self._unimplemented = unimplemented
        self._backoff = backoff or Backoff(1.0, 60.0)
        self._pipe = WakePipe()
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._known: frozenset[str] = frozenset()
        self._running: frozenset[str] = frozenset()
        self._exits = exits or ExitWatch(None)
        self._stop_pipe: Optional[WakePipe] = None  # the polling thread's own, while it polls
        self._baseline: Optional[tuple[object, ...]] = None
        self._endpoint = ""
        self._located = threading.Event()
        self.last_error = ""
        self._stream: Optional[EventStream] = None
        self._stop = threading.Event()
        self.mode = "connecting"
        self._thread = threading.Thread(target=self._run, name="lhsweep-cri", daemon=True)

    def start(self) -> None:
        """Start the thread; it follows the stream once observed() names kubelet's runtime."""
        self._thread.start()

    def fileno(self) -> int:
        """Readable when the thread asks for a sweep."""
        return self._pipe.fileno()

    def observed(self, view: RuntimeView) -> None:
        """What the last sweep saw: its instance-managers' ends trigger; polling compares to it."""
        with self._lock:
            self._known = frozenset(im.container_id for im in view.instance_managers
                                    if im.container_id)
            self._baseline = fingerprint(view)
            if view.state is RuntimeState.KNOWN and view.endpoint:
                self._running = frozenset(im.container_id for im in view.instance_managers
                                          if im.container_id and im.container_state == "running")
                self._endpoint = view.endpoint
                self._located.set()

    def handle(self) -> Optional[str]:
        """The trigger(s) the thread raised since the last call, joined; None when none."""
        self._pipe.drain()
        with self._lock:
            reasons, self._pending = self._pending, set()
        return "+".join(sorted(reasons)) or None

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread (cancelling a running stream) and wait for it a bounded time."""
        self._stop.set()
        self._located.set()
        with self._lock:
            stream = self._stream
            if self._stop_pipe is not None:
                self._stop_pipe.poke()
        if stream is not None:
            stream.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _fire(self, reason: str) -> None:
        with self._lock:
            self._pending.add(reason)
        self._pipe.poke()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._located.wait()
            if self._stop.is_set():
                return
            opened = time.monotonic()
            try:
                self._follow_stream()
            except RuntimeQueryError as exc:
                self.last_error = str(exc)
                if self._unimplemented(exc):
                    self._poll()
                    return
            except Exception as exc:  # a bug in the stream must not end the watch
                self.last_error = f"{type(exc).__name__}: {exc}"
            if self._stop.is_set():
                return
            self.mode = "reconnecting"
            if time.monotonic() - opened >= STREAM_HEALTHY_S:
                self._backoff.reset()
                self._fire("cri-reconnect")
            self._stop.wait(self._backoff.next_delay())

    def _follow_stream(self) -> None:
        with self._lock:
            endpoint = self._endpoint
        stream = self._open(endpoint, self._config.cri_timeout)
        with self._lock:
            self._stream = stream
        try:
            for container_id, event_type in stream:
                self.mode = "events"
                with self._lock:
                    known = container_id in self._known
                if known and any(word in event_type.lower() for word in _ENDING_EVENTS):
                    self._fire("cri-event")
                if self._stop.is_set():
                    return
        finally:
            with self._lock:
                self._stream = None

    def _poll(self) -> None:
        """The runtime has no event stream: ask it every cri.poll_interval, sweep on a change.

        A watched instance-manager's exit makes it ask at once, then every EXIT_REPOLL_S until
        the runtime reports a change (trigger im-exit) or EXIT_REPOLL_FOR_S has passed.
        """
        self.mode = "polling"
        with self._lock:
            self._stop_pipe = stop = WakePipe()
        hurry_until = 0.0
        try:
            while True:
                hurrying = time.monotonic() < hurry_until
                interval = self._config.cri_poll_interval
                exited = self._wait_interval(stop.fileno(), min(EXIT_REPOLL_S, interval) if hurrying
                                             else interval)
                if exited is None:
                    return
                if exited:
                    hurrying, hurry_until = True, time.monotonic() + EXIT_REPOLL_FOR_S
                current = fingerprint(self._query(self._config))
                with self._lock:
                    changed = self._baseline is not None and current != self._baseline
                    self._baseline = current
                if changed:
                    self._fire("im-exit" if hurrying else "cri-poll")
                    hurry_until = 0.0
        finally:
            self._exits.close()
            with self._lock:
                self._stop_pipe = None
            stop.close()

    def _wait_interval(self, stop_fd: int, interval: float) -> Optional[bool]:
        """Wait `interval` s: True as soon as a watched instance-manager exits, False at its end,
        None on stop."""
        deadline = time.monotonic() + interval
        with self._lock:
            endpoint, running = self._endpoint, self._running
        self._exits.track(endpoint, self._config.cri_timeout, running)
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._exits.wait(stop_fd, remaining):
                return True
        return None
