"""HttpCaller against a real loopback server: retries, Retry-After, breaker, timeouts, errors."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from samples.api_server import FakeApi, Reply, Seen, items
from tasks.errors import ApiError, InputError, RateLimited
from tasks.http.breaker import CircuitOpen
from tasks.http.caller import HttpCaller
from tasks.http.options import HttpOptions


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi({"items": items(5)}).run() as server:
        yield server


def caller(**options: Any) -> HttpCaller:
    settings: dict[str, Any] = {
        "rate_limit_per_second": 200,
        "backoff_seconds": 0.01,
        "breaker_pause_seconds": 0.1,
    }
    return HttpCaller(HttpOptions(**(settings | options)), base_url="http://127.0.0.1", name="test")


def script(api: FakeApi, replies: list[Reply]) -> None:
    """Answer the next requests with `replies`, in order, then normally."""

    def next_reply(seen: Seen) -> Reply | None:
        del seen
        return replies.pop(0) if replies else None

    api.hooks.append(next_reply)


def test_5xx_and_429_are_retried_until_the_answer_comes(api: FakeApi) -> None:
    script(api, [Reply(503, "down"), Reply(429, "{}"), Reply(502, "bad gateway")])
    http = caller()

    attempt = http.try_request("GET", f"{api.url}/items")

    assert attempt.unwrap().json() == items(5)
    assert attempt.attempts == 4
    summary = http.summary()
    assert (summary.requests, summary.retries, summary.rate_limited, summary.server_errors) == (
        4,
        3,
        1,
        2,
    )


def test_retry_after_in_seconds_is_waited_for(api: FakeApi) -> None:
    script(api, [Reply(429, "{}", {"Retry-After": "1"})])

    caller().try_request("GET", f"{api.url}/items").unwrap()

    first, second = api.arrivals()
    assert second - first >= 1.0


def test_retry_after_zero_waits_the_backoff_instead_of_spinning(api: FakeApi) -> None:
    script(api, [Reply(429, "{}", {"Retry-After": "0"})] * 3)

    caller(backoff_seconds=0.1).try_request("GET", f"{api.url}/items").unwrap()

    times = api.arrivals()
    assert len(times) == 4
    assert all(later - earlier >= 0.1 for earlier, later in itertools.pairwise(times))


def test_retry_after_beyond_the_cap_fails_at_once_with_a_clear_message(api: FakeApi) -> None:
    script(api, [Reply(429, "{}", {"Retry-After": "3600"})])
    started = time.monotonic()

    with pytest.raises(RateLimited, match=r"Retry-After 3600 s, more than max_retry_after=30 s"):
        caller(max_retry_after=30).try_request("GET", f"{api.url}/items").unwrap()
    assert time.monotonic() - started < 1
    assert len(api.seen) == 1


def test_client_errors_are_not_retried_and_name_the_fix(api: FakeApi) -> None:
    script(api, [Reply(401, '{"error": "who are you"}')])

    attempt = caller().try_request("GET", f"{api.url}/items")

    assert attempt.attempts == 1
    assert isinstance(attempt.error, ApiError)
    assert attempt.error.status == 401
    assert "pass 'auth_block'" in str(attempt.error)


def test_exhausted_retries_return_the_last_error(api: FakeApi) -> None:
    script(api, [Reply(503, "down")] * 10)

    attempt = caller(max_retries=2).try_request("GET", f"{api.url}/items")

    assert attempt.attempts == 3
    assert isinstance(attempt.error, ApiError)
    assert attempt.error.status == 503


def test_an_open_circuit_fails_fast_without_sending_then_one_probe_decides(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    script(api, [Reply(503, "down")] * 3)
    http = caller(breaker_failures=3, breaker_pause_seconds=0.5, max_retries=5)

    with caplog.at_level(logging.WARNING, logger="batchflows"):
        first = http.try_request("GET", f"{api.url}/items")
    started = time.monotonic()
    second = http.try_request("GET", f"{api.url}/items")

    assert time.monotonic() - started < 0.2
    for attempt in (first, second):
        assert isinstance(attempt.error, CircuitOpen)
        assert "circuit open after 3 consecutive failures, last status 503" in str(attempt.error)
    assert len(api.seen) == 3  # nothing sent while the circuit is open
    assert http.summary().breaker_refused == 2
    assert "open after 3 consecutive failures; requests fail at once" in caplog.text

    time.sleep(0.55)
    probe = http.try_request("GET", f"{api.url}/items")

    assert probe.unwrap().json() == items(5)
    assert http.try_request("GET", f"{api.url}/items").error is None
    assert len(api.seen) == 5


def test_a_failed_probe_opens_the_circuit_for_another_pause(api: FakeApi) -> None:
    script(api, [Reply(503, "down")] * 3)
    http = caller(breaker_failures=2, breaker_pause_seconds=0.3, max_retries=0)
    http.try_request("GET", f"{api.url}/items")
    http.try_request("GET", f"{api.url}/items")
    time.sleep(0.35)

    probe = http.try_request("GET", f"{api.url}/items")
    after = http.try_request("GET", f"{api.url}/items")

    assert probe.error is not None
    assert probe.error.status == 503
    assert isinstance(after.error, CircuitOpen)
    assert len(api.seen) == 3


def test_an_unreachable_host_is_an_api_error_after_its_retries() -> None:
    started = time.monotonic()

    attempt = caller(max_retries=2).try_request("GET", "http://127.0.0.1:9/items")

    assert time.monotonic() - started < 5
    assert attempt.attempts == 3
    assert isinstance(attempt.error, ApiError)
    assert "ConnectError" in str(attempt.error)
    assert "host is reachable" in str(attempt.error)


def test_a_slow_answer_times_out_instead_of_hanging(api: FakeApi) -> None:
    def stall(seen: Seen) -> Reply | None:
        del seen
        time.sleep(1.0)
        return None

    api.hooks.append(stall)
    started = time.monotonic()

    attempt = caller(request_timeout_seconds=0.2, max_retries=1).try_request(
        "GET", f"{api.url}/items"
    )

    assert time.monotonic() - started < 1.5
    assert attempt.error is not None
    assert "ReadTimeout" in str(attempt.error)


def test_credentials_in_plain_headers_are_refused() -> None:
    with pytest.raises(InputError, match="auth_block"):
        caller(headers={"X-Api-Key": "secret"})


def test_out_of_range_options_name_their_parameter() -> None:
    with pytest.raises(InputError, match="parameter 'max_concurrency'"):
        HttpOptions.from_parameters({"max_concurrency": 500})
