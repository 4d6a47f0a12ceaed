"""The per-key submission limit: a sliding minute, exact, per key."""

from __future__ import annotations

from service.ratelimit import KeyRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_request_past_the_limit_waits_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    limiter = KeyRateLimiter(3, clock=clock)

    granted = [limiter.acquire("k") for _ in range(3)]
    clock.now = 20.5
    refused = limiter.acquire("k")
    clock.now = 60.0
    again = limiter.acquire("k")

    assert granted == [None, None, None]
    assert refused == 40
    assert again is None


def test_keys_do_not_share_a_limit() -> None:
    limiter = KeyRateLimiter(1, clock=Clock())

    assert limiter.acquire("a") is None
    assert limiter.acquire("b") is None
    assert limiter.acquire("a") == 60
