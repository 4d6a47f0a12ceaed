"""When and how long to wait before retrying an HTTP request (the policy tenacity follows).

Retried: transport errors (connect, read, timeouts), 408, 429 and 5xx. Each wait is an
exponential backoff with jitter, or the API's own `Retry-After` (seconds or an HTTP date) when
it sent one. A `Retry-After` of 0 still waits `backoff_seconds`, so it never becomes a busy
loop; one longer than `max_retry_after` is not retried at all: the request fails at once with
a message saying so, instead of a run hanging for an hour.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from pydantic import BaseModel, ConfigDict, Field
from tenacity import RetryCallState
from tenacity.wait import wait_base

from tasks.errors import ApiError, RateLimited, ServerError

RETRYABLE_STATUS = frozenset({408})
JITTER = 0.1


class RetryPolicy(BaseModel):
    """How often and how patiently one request is retried."""

    model_config = ConfigDict(frozen=True)

    max_retries: int = Field(default=5, ge=0)
    backoff_seconds: float = Field(default=0.5, gt=0)
    max_backoff_seconds: float = Field(default=30.0, gt=0)
    max_retry_after: float = Field(default=60.0, ge=0)

    def should_retry(self, error: BaseException) -> bool:
        """A failure a later attempt may overcome, and whose requested pause we accept."""
        if isinstance(error, httpx.TransportError):
            return True
        if not isinstance(error, ApiError):
            return False
        retryable = isinstance(error, RateLimited | ServerError) or error.status in RETRYABLE_STATUS
        return retryable and not self.asks_too_long(error.retry_after)

    def asks_too_long(self, retry_after: float | None) -> bool:
        """True when the API asks for a pause beyond `max_retry_after`."""
        return retry_after is not None and retry_after > self.max_retry_after

    def backoff(self, attempt: int) -> float:
        """Exponential backoff for the `attempt`-th failure, with "equal jitter" (50-100 %)."""
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2.0 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def pause(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after the `attempt`-th failure, honouring `Retry-After`."""
        if retry_after is None:
            return self.backoff(attempt)
        return max(retry_after, self.backoff_seconds) * random.uniform(1.0, 1.0 + JITTER)


class RetryWait(wait_base):
    """tenacity's wait: the policy's pause for the failure that just happened."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = error.retry_after if isinstance(error, ApiError) else None
        return self.policy.pause(retry_state.attempt_number, retry_after)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date); None if unusable.

    A date in the past means "now" (0); a header that is neither form is ignored, so the
    ordinary backoff applies.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until(text, now or datetime.now(UTC))
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def _seconds_until(http_date: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
