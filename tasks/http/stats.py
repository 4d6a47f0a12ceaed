"""Counters of one run's requests, shown in results and in the summary artifact."""

from __future__ import annotations

import threading
import time
from typing import Any

from pydantic import BaseModel


class RequestCounts(BaseModel):
    """The request figures every API flow's result carries."""

    requests: int
    retries: int
    rate_limited: int
    requests_per_second: float


class CallSummary(RequestCounts):
    """What the requests of a run did, for results and the summary artifact."""

    server_errors: int
    transport_errors: int
    breaker_refused: int
    seconds: float

    def request_counts(self) -> dict[str, Any]:
        """The fields of `RequestCounts`, for a flow's result."""
        return self.model_dump(include=set(RequestCounts.model_fields))


class CallStats:
    """Thread-safe counters of one run's requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.rate_limited = 0
        self.server_errors = 0
        self.transport_errors = 0
        self.answers = 0
        self._first_start: float | None = None
        self._last_end: float | None = None

    def started(self) -> None:
        """A request leaves (the first one starts the clock)."""
        with self._lock:
            self.requests += 1
            if self._first_start is None:
                self._first_start = time.monotonic()

    def finished(self, status: int | None) -> None:
        """A request ended with `status`, or with no answer at all (None)."""
        with self._lock:
            self._last_end = time.monotonic()
            self.answers += status is not None
            if status is None:
                self.transport_errors += 1
            elif status == 429:
                self.rate_limited += 1
            elif status >= 500:
                self.server_errors += 1

    def retried(self) -> None:
        """A failed attempt will be tried again."""
        with self._lock:
            self.retries += 1

    def summary(self, breaker_refused: int) -> CallSummary:
        """The counts so far, and requests per second from first start to last answer."""
        with self._lock:
            seconds = 0.0
            if self._first_start is not None and self._last_end is not None:
                seconds = max(self._last_end - self._first_start, 0.0)
            return CallSummary(
                requests=self.requests,
                retries=self.retries,
                rate_limited=self.rate_limited,
                server_errors=self.server_errors,
                transport_errors=self.transport_errors,
                breaker_refused=breaker_refused,
                seconds=round(seconds, 3),
                requests_per_second=round(self.requests / seconds, 2) if seconds else 0.0,
            )
