"""Retry-After parsing and the retry policy's waits and decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tasks.errors import ApiError, RateLimited, ServerError
from tasks.http.retry import RetryPolicy, parse_retry_after

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-4", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),
        ("Sat, 01 Jun 2024 12:00:30 GMT", 30.0),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header: str, seconds: float) -> None:
    assert parse_retry_after(header, NOW) == pytest.approx(seconds)


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "inf", "Mon, 99 Foo 2024"])
def test_unusable_retry_after_is_ignored(header: str | None) -> None:
    assert parse_retry_after(header, NOW) is None


def test_retry_after_zero_still_waits_the_backoff_so_it_is_no_busy_loop() -> None:
    policy = RetryPolicy(backoff_seconds=0.2)

    assert all(policy.pause(attempt, 0.0) >= 0.2 for attempt in range(1, 6))


def test_retry_after_is_honoured_with_a_little_jitter() -> None:
    policy = RetryPolicy(backoff_seconds=0.1)

    pauses = [policy.pause(1, 2.0) for _ in range(50)]

    assert all(2.0 <= pause <= 2.2 for pause in pauses)
    assert len(set(pauses)) > 1


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    policy = RetryPolicy(backoff_seconds=0.5, max_backoff_seconds=3.0)

    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        pauses = [policy.pause(attempt, None) for _ in range(30)]
        assert all(ceiling / 2 <= pause <= ceiling for pause in pauses)


def _transport_error() -> httpx.TransportError:
    return httpx.ConnectError("refused")


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (_transport_error(), True),
        (ServerError("503", status=503), True),
        (ServerError("503", status=503, retry_after=3600), False),
        (RateLimited("429", retry_after=5), True),
        (RateLimited("429", retry_after=None), True),
        (RateLimited("429", retry_after=3600), False),
        (ApiError("408", status=408), True),
        (ApiError("400", status=400), False),
        (ApiError("401", status=401), False),
        (ValueError("not HTTP"), False),
    ],
    ids=[
        "transport",
        "5xx",
        "5xx-retry-after-too-long",
        "429",
        "429-no-retry-after",
        "429-retry-after-an-hour",
        "408",
        "400",
        "401",
        "other",
    ],
)
def test_only_failures_a_retry_can_fix_are_retried(error: BaseException, retried: bool) -> None:
    assert RetryPolicy(max_retry_after=60).should_retry(error) is retried
