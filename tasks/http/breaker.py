"""A circuit breaker that fails fast once the API has failed too many times in a row.

After `failures` consecutive failures (transport errors and 5xx; other answers show the API is
up) the circuit opens: while it is open no request is attempted at all, each one fails at once
with `CircuitOpen` ("circuit open after N consecutive failures, last status S"), so a push
dead-letters its remaining records and a pull stops in seconds instead of hammering a sick API
record after record. Once `pause_seconds` have passed, exactly one request goes through as a
probe: its success closes the circuit, its failure opens it for another pause.

pybreaker keeps the state machine (counting, open / half-open / closed, listeners). Its `call()`
holds the breaker's lock for as long as the wrapped function runs, which would serialise a
run's concurrent requests, so the request itself runs outside and only its outcome is reported
through `call()`; the gate that lets one probe through is ours, as pybreaker's half-open state
admits every caller.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pybreaker

from tasks.common.run_log import run_logger
from tasks.errors import ApiError, ServerError


class CircuitOpen(ApiError):
    """The request was not sent: the circuit is open (the message says why)."""


def _api_is_up(error: BaseException) -> bool:
    """An answer other than 5xx shows the API is alive: not a breaker failure."""
    return isinstance(error, ApiError) and not isinstance(error, ServerError)


class _LogTransitions(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        """Log when the circuit opens (requests fail fast) and when it closes again."""
        old = getattr(old_state, "name", old_state)
        if new_state.name == pybreaker.STATE_OPEN and old != pybreaker.STATE_HALF_OPEN:
            run_logger().warning(
                "circuit breaker %s: open after %d consecutive failures; requests fail at once "
                "for %.1f s, then one probe decides",
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
        self._lock = threading.Lock()
        self._probing = False
        self._refused = 0
        self._last_failure = "none"

    @property
    def refused(self) -> int:
        """How many requests failed at once because the circuit was open."""
        return self._refused

    def admit(self) -> bool:
        """Let a request go or raise `CircuitOpen`; True when it is the probe of an open circuit."""
        with self._lock:
            state = self._breaker.current_state
            if state == pybreaker.STATE_CLOSED:
                return False
            remaining = self._open_remaining()
            if state == pybreaker.STATE_OPEN and remaining <= 0 and not self._probing:
                self._probing = True
                return True
            self._refused += 1
            hint = "" if self._last_failure.isdigit() else "; is base_url right, the host up?"
            raise CircuitOpen(
                f"circuit open after {self._breaker.fail_max} consecutive failures, last status "
                f"{self._last_failure}; not sent (one probe request in {max(remaining, 0):.1f} s "
                f"decides whether the API is back){hint}"
            )

    def _open_remaining(self) -> float:
        opened_at = self._breaker._state_storage.opened_at
        if opened_at is None:
            return 0.0
        elapsed = (datetime.now(UTC) - opened_at).total_seconds()
        return self._breaker.reset_timeout - elapsed

    def record(self, error: BaseException | None, *, probe: bool = False) -> None:
        """Report one request's outcome (None for success) to the state machine."""
        if error is not None and not _api_is_up(error):
            status = error.status if isinstance(error, ApiError) else None
            self._last_failure = str(status) if status is not None else type(error).__name__
        try:
            self._breaker.call(_outcome, error)
        except pybreaker.CircuitBreakerError:
            pass  # reported while open: a request that started before the circuit opened
        except Exception as reported:
            if reported is not error:
                raise
        finally:
            if probe:
                with self._lock:
                    self._probing = False


def _outcome(error: BaseException | None) -> None:
    if error is not None:
        raise error
