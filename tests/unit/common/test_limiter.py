"""The rate limiter: exact windows, bounded bursts, bounded in-flight requests."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.common.limiter import RateLimiter
from tasks.errors import InputError


class FakeClock:
    """Time that passes only when someone sleeps (or the test moves it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter_on(clock: FakeClock, rate: float, concurrency: int) -> RateLimiter:
    return RateLimiter(rate, concurrency, clock=clock, sleep=clock.sleep)


def most_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The most of `times` (sorted) within any half-open window [t, t + window)."""
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window - 1e-9:
            start += 1
        most = max(most, end - start + 1)
    return most


def grant_times(
    limiter: RateLimiter, clock: FakeClock, count: int, *, lasting: float = 0.0
) -> list[float]:
    """Run `count` requests one after another, each `lasting` seconds; their start times."""
    times = []
    for _ in range(count):
        with limiter.slot():
            times.append(clock.now)
            clock.sleep(lasting)
    return times


def test_never_more_than_the_rate_in_any_one_second_window_over_many_seconds() -> None:
    clock = FakeClock()
    times = grant_times(limiter_on(clock, 10, 5), clock, 200)

    assert most_in_any_window(times) == 10
    # Requests that answer at once run at the full rate.
    assert times[-1] <= 200 / 10


def test_the_window_counts_from_when_a_request_finished() -> None:
    # The server saw request n before it answered, so starting request n + limit one second
    # after that answer keeps the server's count exact however slow request n was.
    clock = FakeClock()
    times = grant_times(limiter_on(clock, 2, 2), clock, 4, lasting=0.3)

    assert times == pytest.approx([0.0, 0.3, 1.3, 1.6])


def test_a_request_still_in_flight_holds_its_place_in_the_window() -> None:
    limiter = RateLimiter(2, 3)
    release = threading.Event()
    starts: list[float] = []

    def request(hold: bool) -> None:
        with limiter.slot():
            starts.append(time.monotonic())
            if hold:
                release.wait(5)

    slow = threading.Thread(target=request, args=(True,))
    slow.start()
    request(False)
    third = threading.Thread(target=request, args=(False,))
    third.start()
    time.sleep(1.5)
    assert len(starts) == 2  # the first request has not answered: the third waits
    release.set()
    released = time.monotonic()
    third.join(5)
    slow.join(5)

    assert len(starts) == 3
    assert starts[2] - released >= 1.0 - 1e-3


def test_burst_is_at_most_max_concurrency_then_requests_are_spaced() -> None:
    clock = FakeClock()
    times = grant_times(limiter_on(clock, 20, 3), clock, 6)

    assert times[:3] == [0.0, 0.0, 0.0]
    assert times[3:] == pytest.approx([0.05, 0.10, 0.15])


def test_burst_never_exceeds_the_rate_when_concurrency_is_larger() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, 4, 32)

    times = grant_times(limiter, clock, 8)

    assert limiter.burst == 4
    assert times[:4] == [0.0] * 4
    assert most_in_any_window(times) == 4


def test_a_rate_below_one_spaces_requests_by_its_inverse() -> None:
    clock = FakeClock()
    times = grant_times(limiter_on(clock, 0.5, 5), clock, 3)

    assert times == pytest.approx([0.0, 2.0, 4.0])


def test_a_fractional_rate_never_rounds_up_within_a_second() -> None:
    clock = FakeClock()
    times = grant_times(limiter_on(clock, 2.5, 5), clock, 30)

    assert most_in_any_window(times) == 2


def test_idle_time_does_not_bank_more_than_one_burst() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, 10, 2)
    grant_times(limiter, clock, 5)
    clock.now += 60

    times = grant_times(limiter, clock, 4)

    assert times[1] == times[0]
    assert times[2] == pytest.approx(times[0] + 0.1)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(min_value=0.2, max_value=200),
    concurrency=st.integers(min_value=1, max_value=32),
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=120),
)
def test_any_arrival_pattern_keeps_the_window_and_burst_rules(
    rate: float, concurrency: int, gaps: list[float]
) -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, rate, concurrency)
    times = []
    for gap in gaps:
        clock.now += gap
        with limiter.slot():
            times.append(clock.now)

    assert most_in_any_window(times) <= limiter.limit
    # GCRA: any n consecutive grants span at least (n - burst) / rate seconds.
    for first in range(len(times)):
        for last in range(first + limiter.burst, min(len(times), first + limiter.burst + 5)):
            span = times[last] - times[first]
            assert span >= (last - first + 1 - limiter.burst) / rate - 1e-9


def test_threads_sharing_a_limiter_never_exceed_the_rate_or_the_concurrency() -> None:
    limiter = RateLimiter(50, 3)
    starts: list[float] = []
    in_flight = [0, 0]  # now, most
    lock = threading.Lock()

    def request() -> None:
        with limiter.slot():
            with lock:
                starts.append(time.monotonic())
                in_flight[0] += 1
                in_flight[1] = max(in_flight)
            time.sleep(0.01)
            with lock:
                in_flight[0] -= 1

    def ten_requests() -> None:
        for _ in range(10):
            request()

    threads = [threading.Thread(target=ten_requests) for _ in range(8)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began

    assert len(starts) == 80
    assert most_in_any_window(sorted(starts)) <= 50
    assert in_flight[1] == 3
    assert elapsed >= 1.0  # 80 requests at 50/s cannot finish sooner


def test_requests_are_granted_in_the_order_they_ask() -> None:
    limiter = RateLimiter(40, 10)
    granted: list[int] = []
    lock = threading.Lock()

    def ask(number: int) -> None:
        with limiter.slot(), lock:
            granted.append(number)

    threads = [threading.Thread(target=ask, args=(number,)) for number in range(30)]
    for number, thread in enumerate(threads):
        thread.start()
        while limiter._tickets <= number:  # it has asked: the next one asks after it
            time.sleep(0.001)
    for thread in threads:
        thread.join()

    assert granted == list(range(30))


@pytest.mark.parametrize(
    ("rate", "concurrency", "parameter"),
    [
        (0, 5, "rate_limit_per_second"),
        (-1, 5, "rate_limit_per_second"),
        (float("inf"), 5, "rate_limit_per_second"),
        (10, 0, "max_concurrency"),
    ],
)
def test_impossible_limits_are_refused_naming_the_parameter(
    rate: float, concurrency: int, parameter: str
) -> None:
    with pytest.raises(InputError, match=parameter):
        RateLimiter(rate, concurrency)
