"""A circuit breaker that pauses a run's requests after consecutive failures of the API.

After `failures` consecutive failures (transport errors and 5xx; 4xx answers mean the API is
up) the circuit opens: every request of the run waits `pause_seconds` before the next try,
instead of hammering a sick API, and the log says so. Then one round of requests is let
through (half-open): a success closes the circuit, a failure opens it again.

pybreaker keeps the state machine (counting, open / half-open / closed, listeners). Its `call()`
holds the breaker's lock for as long as the wrapped function runs, which would serialise a
run's concurrent requests, so the request itself runs outside and only its outcome is reported
through `call()`.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pybreaker

from tasks.common.run_log import run_logger
from tasks.errors import ApiError, ServerError


def _api_is_up(error: BaseException) -> bool:
    """An answer other than 5xx shows the API is alive: not a breaker failure."""
    return isinstance(error, ApiError) and not isinstance(error, ServerError)


class _LogTransitions(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        """Log when the circuit opens (requests pause) and when it closes again."""
        old = getattr(old_state, "name", old_state)
        if new_state.name == pybreaker.STATE_OPEN:
            run_logger().warning(
                "circuit breaker %s: open after %d consecutive failures; pausing requests "
                "for %.1f s instead of hammering a sick API",
                cb.name,
                cb.fail_max,
                cb.reset_timeout,
            )
        elif new_state.name == pybreaker.STATE_CLOSED and old == pybreaker.STATE_HALF_OPEN:
            run_logger().info("circuit breaker %s: closed again, the API answers", cb.name)


class Breaker:
    """The breaker of one run, shared by its concurrent requests."""

    def __init__(self, name: str, failures: int, pause_seconds: float) -> None:
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=failures,
            reset_timeout=pause_seconds,
            exclude=[_api_is_up],
            listeners=[_LogTransitions()],
            name=name,
            throw_new_error_on_trip=False,
        )
        self._pauses = 0
        self._lock = threading.Lock()

    @property
    def pauses(self) -> int:
        """How many times a request waited for the open circuit."""
        return self._pauses

    def wait_until_callable(self) -> float:
        """Sleep while the circuit is open; the seconds slept."""
        slept = 0.0
        while True:
            remaining = self._open_remaining()
            if remaining <= 0:
                return slept
            with self._lock:
                self._pauses += 1
            time.sleep(remaining)
            slept += remaining

    def _open_remaining(self) -> float:
        if self._breaker.current_state != pybreaker.STATE_OPEN:
            return 0.0
        opened_at = self._breaker._state_storage.opened_at
        if opened_at is None:
            return 0.0
        elapsed = (datetime.now(UTC) - opened_at).total_seconds()
        return self._breaker.reset_timeout - elapsed

    def record(self, error: BaseException | None) -> None:
        """Report one request's outcome (None for success) to the state machine."""
        try:
            self._breaker.call(_outcome, error)
        except pybreaker.CircuitBreakerError:
            pass  # reported while open: a request that started before the circuit opened
        except Exception as reported:
            if reported is not error:
                raise


def _outcome(error: BaseException | None) -> None:
    if error is not None:
        raise error
