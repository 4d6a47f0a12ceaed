"""Send one HTTP request the careful way: limited, retried, behind a circuit breaker, counted.

A run builds one `HttpCaller` from its flat HTTP parameters (`HttpOptions`) and hands it to all
of its tasks, so they share one rate limiter, one breaker and one set of counters, over the
process-wide pooled client. Every attempt of a request:

1. fails at once while the circuit is open (`tasks.http.breaker`),
2. takes an in-flight place and a start time from the limiter (`tasks.common.limiter`),
3. sends with the run's timeout, then turns the answer into success or an `ApiError`,
4. reports the outcome to the breaker; tenacity retries what `RetryPolicy` allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from tasks.common.limiter import RateLimiter
from tasks.common.run_log import run_logger
from tasks.errors import ApiError
from tasks.http.answers import describe, error_of, excerpt
from tasks.http.auth import auth_headers, plain_headers
from tasks.http.breaker import Breaker
from tasks.http.client import request_timeout, same_origin, shared_client
from tasks.http.deadline import within
from tasks.http.options import HttpOptions
from tasks.http.redact import redact_url
from tasks.http.retry import RetryWait
from tasks.http.stats import CallStats, CallSummary

MAX_REDIRECTS = 5

JsonBody = dict[str, Any] | list[Any]


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

    def __init__(self, options: HttpOptions, *, base_url: str, name: str) -> None:
        self.options = options
        self.policy = options.policy
        self.base_url = base_url
        self.headers = plain_headers(options.headers or {})
        self.credentials = auth_headers(options.auth_block)
        self.limiter = RateLimiter(
            options.rate_limit_per_second,
            options.max_concurrency,
            global_limit=options.global_limit,
        )
        self.breaker = Breaker(name, options.breaker_failures, options.breaker_pause_seconds)
        self.stats = CallStats()
        self.timeout = request_timeout(options.request_timeout_seconds)

    def summary(self) -> CallSummary:
        """What this run's requests did so far."""
        return self.stats.summary(self.breaker.refused)

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
        if self.credentials and same_origin(url, self.base_url):
            merged |= self.credentials
        if params:
            url = str(httpx.URL(url).copy_merge_params(dict(params)))
        try:
            response = retrying(self._attempt, method, url, json_body, merged)
        except ApiError as exc:
            return Attempted(None, exc, retrying.statistics.get("attempt_number", 1))
        except httpx.TransportError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            shown = redact_url(str(exc.request.url if _has_request(exc) else url))
            hint = (
                f"the whole request may take request_timeout_seconds="
                f"{self.options.request_timeout_seconds:g} s"
                if isinstance(exc, httpx.TimeoutException)
                else "check that base_url is right and the host is reachable"
            )
            error = ApiError(
                f"{method} {shown}: {type(exc).__name__}: {exc or 'no detail'} (after "
                f"{attempts} attempts); {hint}"
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
        json_body: JsonBody | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        probe = self.breaker.admit()
        try:
            response = self._exchange(method, url, json_body, headers)
        except (httpx.TransportError, ApiError) as exc:
            self.breaker.record(exc, probe=probe)
            raise
        error = self._redirect_refused(response) or error_of(
            response, self.policy, bool(self.options.auth_block)
        )
        self.breaker.record(error, probe=probe)
        if error is not None:
            raise error
        return response

    def _exchange(
        self, method: str, url: str, json_body: JsonBody | None, headers: dict[str, str]
    ) -> httpx.Response:
        """Send, and follow same-origin redirects of a GET; each hop is a request of its own,
        under the rate limit and its own deadline (a redirect is one more request the server
        counts)."""
        response = self._send(method, url, json_body, headers)
        seen = {str(response.request.url)}
        while method == "GET" and response.is_redirect and response.next_request:
            target = response.next_request.url
            if not same_origin(target, url) or str(target) in seen:
                break
            if len(seen) > MAX_REDIRECTS:
                break
            seen.add(str(target))
            response = self._send(method, str(target), None, headers)
        return response

    def _send(
        self, method: str, url: str, json_body: JsonBody | None, headers: dict[str, str]
    ) -> httpx.Response:
        """One request, when the rate limiter grants it, read whole within its deadline."""
        with self.limiter.slot():
            self.stats.started()
            try:
                with within(self.options.request_timeout_seconds):
                    response = self._read(method, url, json_body, headers)
            except (httpx.TransportError, ApiError) as exc:
                self.stats.finished(None if isinstance(exc, httpx.TransportError) else 0)
                raise
        self.stats.finished(response.status_code)
        return response

    def _read(
        self, method: str, url: str, json_body: JsonBody | None, headers: dict[str, str]
    ) -> httpx.Response:
        client = shared_client()
        request = client.build_request(
            method, url, json=json_body, headers=headers, timeout=self.timeout
        )
        response = client.send(request, stream=True)
        try:
            response.read()
        except httpx.DecodingError as exc:
            raise ApiError(
                f"{describe(request)}: {response.status_code}: the body cannot be decoded "
                f"({type(exc).__name__}: {exc})",
                status=response.status_code,
            ) from exc
        finally:
            response.close()
        return response

    def _redirect_refused(self, response: httpx.Response) -> ApiError | None:
        """Why a redirect was not followed: a push is never redirected, a pull stays home."""
        if not response.is_redirect:
            return None
        request = response.request
        target = response.next_request.url if response.next_request else None
        if request.method != "GET":
            why = "a push is never redirected (the API must answer the URL it was sent to)"
        elif target is not None and not same_origin(target, request.url):
            why = "a redirect to another origin is not followed"
        else:
            why = f"a redirect loop (or more than {MAX_REDIRECTS} redirects)"
        shown = redact_url(str(target)) if target is not None else "no Location"
        return ApiError(
            f"{describe(request)}: {response.status_code} {response.reason_phrase} to {shown}: "
            f"not followed, {why}",
            status=response.status_code,
            body=excerpt(response),
        )


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018 - httpx raises RuntimeError when the error has no request
    except RuntimeError:
        return False
    return True
