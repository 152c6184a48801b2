"""A consecutive-failure circuit breaker, so a dead encoder service costs nothing per request.

Without it every search would wait out a connect timeout before the API falls back; with
it, after ``failure_threshold`` failures in a row calls fail instantly for ``reset_after_s``,
then a single probe is let through and its outcome decides whether to close again.

Its clock is injectable: :func:`breaker_clock` hands a :class:`ManualClock` to every breaker built
inside a block (the API's, deep in its encoder clients), so a test steps an open circuit to its
probe instead of sleeping through the wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from encoder.errors import EncoderUnavailableError

State = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]

_default_clock: Clock = time.monotonic


class ManualClock:
    """Seconds that pass only when told to (:meth:`advance`)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def breaker_clock(clock: Clock) -> Iterator[Clock]:
    """Breakers built inside the block (and not given a clock) read ``clock``, for their lifetime."""
    global _default_clock
    previous, _default_clock = _default_clock, clock
    try:
        yield clock
    finally:
        _default_clock = previous


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 3,
        reset_after_s: float = 30.0,
        *,
        name: str = "encoder service",
        clock: Clock | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self.name = name
        self._clock = clock or _default_clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self.last_error: str | None = None

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_after_s:
            return "half_open"
        return "open"

    def before_call(self) -> None:
        """Raise EncoderUnavailableError (no network touched) unless a call may go ahead."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return
            if state == "half_open" and not self._probe_in_flight:
                self._probe_in_flight = True
                return
            remaining = max(0.0, self.reset_after_s - (self._clock() - (self._opened_at or 0.0)))
            raise EncoderUnavailableError(
                f"{self.name} circuit is open after {self._failures} consecutive failures "
                f"(last: {self.last_error}); next probe in {remaining:.1f}s"
            )

    def allow(self) -> bool:
        """``before_call`` without the exception: True when a call may go ahead (for callers
        that have somewhere else to go, like a pool of instances or of read replicas)."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half_open" and not self._probe_in_flight:
                self._probe_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probe_in_flight = False
            self.last_error = None

    def record_failure(self, error: str) -> None:
        with self._lock:
            self._failures += 1
            self.last_error = error
            if self._probe_in_flight or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()  # (re)open: a failed probe restarts the wait
            self._probe_in_flight = False
