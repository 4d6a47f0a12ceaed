"""Send one HTTP request the careful way: limited, retried, behind a circuit breaker, counted.

A run builds one `HttpCaller` from its flat HTTP parameters (`HttpOptions`) and hands it to all
of its tasks, so they share one rate limiter, one breaker and one set of counters, over the
process-wide pooled client. Every attempt of a request:

1. waits while the circuit is open (`tasks.http.breaker`),
2. takes an in-flight place and a start time from the limiter (`tasks.http.limiter`),
3. sends with the run's timeout, then turns the answer into success or an `ApiError`,
4. reports the outcome to the breaker; tenacity retries what `RetryPolicy` allows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import httpx
from pydantic import BaseModel
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from tasks.common.run_log import run_logger
from tasks.errors import ApiError, RateLimited, ServerError
from tasks.http.auth import auth_headers, plain_headers
from tasks.http.breaker import Breaker
from tasks.http.client import request_timeout, shared_client
from tasks.http.limiter import RateLimiter
from tasks.http.options import HttpOptions
from tasks.http.retry import RetryWait, parse_retry_after

EXCERPT_CHARS = 300

JsonBody = dict[str, Any] | list[Any]


class CallSummary(BaseModel):
    """What the requests of a run did, for results and the summary artifact."""

    requests: int
    retries: int
    rate_limited: int
    server_errors: int
    transport_errors: int
    breaker_pauses: int
    seconds: float
    requests_per_second: float


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

    def summary(self, breaker_pauses: int) -> CallSummary:
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
                breaker_pauses=breaker_pauses,
                seconds=round(seconds, 3),
                requests_per_second=round(self.requests / seconds, 2) if seconds else 0.0,
            )


class Attempted(NamedTuple):
    """How a request ended: its response or its error, after `attempts` tries."""

    response: httpx.Response | None
    error: ApiError | None
    attempts: int

    def unwrap(self) -> httpx.Response:
        """The successful response, or raise the error."""
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


class HttpCaller:
    """The rate-limited, retrying, circuit-broken requests of one run (module docstring)."""

    def __init__(self, options: HttpOptions, name: str) -> None:
        self.options = options
        self.policy = options.policy
        self.headers = plain_headers(options.headers or {}) | auth_headers(options.auth_block)
        self.limiter = RateLimiter(
            options.rate_limit_per_second,
            options.max_concurrency,
            global_limit=options.global_limit,
        )
        self.breaker = Breaker(name, options.breaker_failures, options.breaker_pause_seconds)
        self.stats = CallStats()
        self.timeout = request_timeout(options.timeout_seconds)

    def summary(self) -> CallSummary:
        """What this run's requests did so far."""
        return self.stats.summary(self.breaker.pauses)

    def try_request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: JsonBody | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Attempted:
        """The successful response or the final `ApiError`, and how many attempts it took."""
        retrying = Retrying(
            stop=stop_after_attempt(self.policy.max_retries + 1),
            wait=RetryWait(self.policy),
            retry=retry_if_exception(self.policy.should_retry),
            before_sleep=self._count_retry,
            reraise=True,
        )
        merged = self.headers | dict(headers or {})
        try:
            response = retrying(self._attempt, method, url, params, json_body, merged)
        except ApiError as exc:
            return Attempted(None, exc, retrying.statistics.get("attempt_number", 1))
        except httpx.TransportError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            shown = _display(exc.request.url if _has_request(exc) else url)
            error = ApiError(
                f"{method} {shown}: {type(exc).__name__}: {exc or 'no detail'} (after "
                f"{attempts} attempts); check that base_url is right and the host is reachable"
            )
            error.__cause__ = exc
            return Attempted(None, error, attempts)
        return Attempted(response, None, retrying.statistics.get("attempt_number", 1))

    def _count_retry(self, retry_state: RetryCallState) -> None:
        """Count a retry and say in the run's log what failed and how long it waits."""
        self.stats.retried()
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        pause = retry_state.next_action.sleep if retry_state.next_action else 0.0
        run_logger().info(
            "%s; retry %d of %d in %.2f s",
            error,
            retry_state.attempt_number,
            self.policy.max_retries,
            pause,
        )

    def _attempt(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json_body: JsonBody | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        self.breaker.wait_until_callable()
        with self.limiter.slot():
            self.stats.started()
            try:
                response = shared_client().request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    headers=headers,
                    timeout=self.timeout,
                )
            except httpx.TransportError as exc:
                self.stats.finished(None)
                self.breaker.record(exc)
                raise
        self.stats.finished(response.status_code)
        error = self._error_of(response)
        self.breaker.record(error)
        if error is not None:
            raise error
        return response

    def _error_of(self, response: httpx.Response) -> ApiError | None:
        """None for a success, else the error that describes the answer."""
        status = response.status_code
        if status < 400:
            return None
        where = f"{response.request.method} {_display(response.request.url)}"
        body = excerpt(response)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if self.policy.asks_too_long(retry_after):
            message = (
                f"{where}: {status} with Retry-After {retry_after:.0f} s, more than "
                f"max_retry_after={self.options.max_retry_after:g} s; not waiting that long "
                "(raise max_retry_after or run later)"
            )
        else:
            message = f"{where}: {status} {response.reason_phrase}: {body!r}"
        if status == 429:
            return RateLimited(message, retry_after=retry_after, body=body)
        if status >= 500:
            return ServerError(message, status=status, body=body, retry_after=retry_after)
        if status in (401, 403):
            message += (
                "; check the credentials in the Secret block named by 'auth_block'"
                if self.options.auth_block
                else "; the API wants credentials: pass 'auth_block', a Prefect Secret block"
            )
        return ApiError(message, status=status, body=body, retry_after=retry_after)


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body, or an `ApiError` saying what came instead."""
    try:
        return response.json()
    except ValueError as exc:
        kind = response.headers.get("Content-Type", "no content type")
        raise ApiError(
            f"{response.request.method} {_display(response.request.url)}: the response is not "
            f"JSON ({kind}): {excerpt(response)!r}",
            status=response.status_code,
            body=excerpt(response),
        ) from exc


def excerpt(response: httpx.Response) -> str:
    """The start of a response body, for messages and dead letters."""
    text = response.text
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - httpx raises RuntimeError when the error has no request
    except RuntimeError:
        return False
    return True


def _display(url: httpx.URL | str) -> str:
    """A URL for messages, without any credentials embedded in it."""
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else str(parsed)
