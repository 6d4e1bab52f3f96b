"""Deadline arithmetic for the main loop: named timers, debounce of trigger bursts, retry backoff."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

# A steady stream of triggers still yields a sweep at least this many debounce windows apart.
MAX_WAIT_WINDOWS = 8


class Timers:
    """Named deadlines (monotonic seconds), each set or not; due ones come in the names' order."""

    def __init__(self, names: Iterable[str]) -> None:
        self._at: dict[str, Optional[float]] = dict.fromkeys(names)

    def at(self, name: str) -> Optional[float]:
        """When the timer `name` is due, None when it is not set."""
        return self._at[name]

    def set(self, name: str, when: Optional[float]) -> None:
        """Set (or, with None, clear) the timer `name`; raises KeyError for a name not in the table."""
        if name not in self._at:
            raise KeyError(name)
        self._at[name] = when

    def next_deadline(self) -> Optional[float]:
        """The earliest deadline set, None when none is."""
        return min((at for at in self._at.values() if at is not None), default=None)

    def take_due(self, now: float) -> list[str]:
        """The timers due at `now`, in table order, each cleared."""
        due = [name for name, at in self._at.items() if at is not None and now >= at]
        for name in due:
            self._at[name] = None
        return due


class Debouncer:
    """Coalesces triggers: fires `delay` after the last one, but no later than a cap after the first.

    The cap keeps a never-ending trickle of events (a node starting hundreds of pods) from
    postponing the sweep forever.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._first: Optional[float] = None
        self._deadline: Optional[float] = None
        self.reasons: set[str] = set()

    @property
    def deadline(self) -> Optional[float]:
        """When the coalesced sweep is due, None when nothing is pending."""
        return self._deadline

    def trigger(self, reason: str, now: float) -> None:
        """Record a trigger at `now` and move the deadline."""
        if self._first is None:
            self._first = now
        cap = self._first + max(self.delay * MAX_WAIT_WINDOWS, self.delay)
        self._deadline = min(now + self.delay, cap)
        self.reasons.add(reason)

    def due(self, now: float) -> bool:
        """True when a pending sweep's deadline has passed."""
        return self._deadline is not None and now >= self._deadline

    def take(self) -> tuple[str, ...]:
        """Clear the pending sweep and return the reasons that asked for it, sorted."""
        reasons = tuple(sorted(self.reasons))
        self._first = self._deadline = None
        self.reasons = set()
        return reasons


class Backoff:
    """Exponential delays: initial, doubled each failure, capped; reset on success."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial = initial
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; counts one more failure."""
        delay = min(self.initial * 2.0 ** min(self.failures, 30), self.cap)
        self.failures += 1
        return delay

    def reset(self) -> None:
        """Forget past failures."""
        self.failures = 0
