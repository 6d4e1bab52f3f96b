"""Deadline arithmetic for the main loop: debounce of trigger bursts and exponential retry backoff."""

from __future__ import annotations

from typing import Optional

# A steady stream of triggers still yields a sweep at least this many debounce windows apart.
MAX_WAIT_WINDOWS = 8


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
