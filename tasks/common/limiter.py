"""A precise rate limiter shared by every concurrent request of one run.

Three rules hold together, each exact:

- **window**: at most `limit = max(1, floor(rate_per_second))` requests reach the server in
  any one-second window. Request `n + limit` may start only one second after request `n`
  *finished* (its answer was read, or it failed). The server saw request `n` before it
  answered, so the two arrivals are more than a second apart, however long either one spent
  in our threads, the GIL or the network: the rule holds by causality, not by a margin. A
  margin on start times was measured too small twice on a loaded two-core machine (31
  requests in one of the server's seconds at 30/s with 50 ms, 61 requests for 60 pages with
  100 ms, a 429 retried); anchoring on completion costs only the request's own latency.
- **burst**: at most `burst = min(max_concurrency, limit)` requests start back to back; after
  that they are spaced `1 / rate_per_second` apart (GCRA, the exact form of a token bucket).
- **in flight**: at most `max_concurrency` requests are open at once (a semaphore held until
  the response is read).

Why our own: the architecture's first choices (`pyrate-limiter`, `limits`) are not installed,
and a Prefect global concurrency limit used as a rate limit measured 11 acquisitions/s for a
limit of 20 with up to 31 in one second here (PREFECT-NOTES.md). A named global limit can be
added on top (`global_limit`) as a budget shared by several runs and workers; this limiter
stays the last gate, so its guarantees hold whatever the global limit does.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import rate_limit

from tasks.errors import InputError

WINDOW_SECONDS = 1.0
GLOBAL_LIMIT_TIMEOUT_SECONDS = 600.0


class _Request:
    """One granted request: when it finished, None while in flight."""

    __slots__ = ("finished_at",)

    def __init__(self) -> None:
        self.finished_at: float | None = None


class RateLimiter:
    """Grants request starts under the window, burst and in-flight rules (module docstring)."""

    def __init__(
        self,
        rate_per_second: float,
        max_concurrency: int,
        *,
        global_limit: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_per_second > 0 or math.isinf(rate_per_second):
            raise InputError(
                f"parameter 'rate_limit_per_second': {rate_per_second} must be a positive number"
            )
        if max_concurrency < 1:
            raise InputError(f"parameter 'max_concurrency': {max_concurrency} must be at least 1")
        self.rate = rate_per_second
        self.limit = max(1, math.floor(rate_per_second))
        self.burst = min(max_concurrency, self.limit)
        self.global_limit = global_limit
        self._interval = 1.0 / rate_per_second
        self._tolerance = (self.burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._turns = threading.Condition()
        self._tickets = 0
        self._serving = 0
        self._recent: deque[_Request] = deque(maxlen=self.limit)  # the last `limit` granted
        self._tat = -math.inf  # GCRA "theoretical arrival time" of the next request
        self._in_flight = threading.BoundedSemaphore(max_concurrency)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one in-flight place while a request runs.

        Leaving the block, normally or by an exception, marks the request finished: the
        window rule counts from that moment.
        """
        if self.global_limit:
            self._take_global_slot(self.global_limit)
        request = self._wait_turn()
        try:
            yield
        finally:
            with self._turns:
                request.finished_at = self._clock()
                self._turns.notify_all()
            self._in_flight.release()

    def _wait_turn(self) -> _Request:
        """Block until a request may start under the in-flight, window and burst rules.

        Requests are granted in the order they ask (a ticket queue taken before the in-flight
        place), so none is overtaken while it waits: pages fetched ahead come back roughly in
        page order.
        """
        with self._turns:
            ticket = self._tickets
            self._tickets += 1
            while ticket != self._serving:
                self._turns.wait()
        try:  # only the holder of the current ticket runs from here on
            self._in_flight.acquire()
            try:
                return self._grant()
            except BaseException:
                self._in_flight.release()
                raise
        finally:
            with self._turns:
                self._serving += 1
                self._turns.notify_all()

    def _grant(self) -> _Request:
        """Wait until the window and burst rules let the next request start, and record it."""
        while True:
            with self._turns:
                now = self._clock()
                ready = self._ready_at()
                if ready is None:  # request `n` of the window rule is still in flight
                    self._turns.wait()
                    continue
                if ready <= now:
                    request = _Request()
                    self._recent.append(request)
                    self._tat = max(self._tat, now) + self._interval
                    return request
            self._sleep(ready - now)

    def _ready_at(self) -> float | None:
        """When the next request may start; None while the window waits for one to finish."""
        ready = self._tat - self._tolerance
        if len(self._recent) == self.limit:
            finished_at = self._recent[0].finished_at
            if finished_at is None:
                return None
            ready = max(ready, finished_at + WINDOW_SECONDS)
        return ready

    @staticmethod
    def _take_global_slot(name: str) -> None:
        try:
            rate_limit(name, timeout_seconds=GLOBAL_LIMIT_TIMEOUT_SECONDS, strict=True)
        except TimeoutError as exc:
            raise InputError(
                f"parameter 'global_limit': no slot of global concurrency limit {name!r} "
                f"within {GLOBAL_LIMIT_TIMEOUT_SECONDS:.0f} s; is it active with a slot decay?"
            ) from exc
        except ConcurrencySlotAcquisitionError as exc:
            raise InputError(
                f"parameter 'global_limit': {exc}. Create it with "
                f"`prefect gcl create {name} --limit N --slot-decay-per-second N`"
            ) from exc
