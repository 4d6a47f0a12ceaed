"""A precise rate limiter shared by every concurrent request of one run.

Three rules hold together, each exact:

- **window**: at most `limit = max(1, floor(rate_per_second))` requests start in any one-second
  window. A log of the last `limit` start times is kept; a request may start once the oldest
  is `window` seconds old. The window is one second plus a small margin, so that the few
  milliseconds between our grant and the moment the server reads the request (thread
  scheduling, the GIL) cannot put `limit + 1` requests into one of the server's seconds. At
  saturation this costs at most `margin` (10 %) of throughput; 50 ms was measured too little
  on a loaded two-core machine (31 requests in one of the server's seconds at 30/s).
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
WINDOW_MARGIN_SECONDS = 0.1
GLOBAL_LIMIT_TIMEOUT_SECONDS = 600.0


class RateLimiter:
    """Grants request starts under the window, burst and in-flight rules (module docstring)."""

    def __init__(
        self,
        rate_per_second: float,
        max_concurrency: int,
        *,
        global_limit: str | None = None,
        margin: float = WINDOW_MARGIN_SECONDS,
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
        self.window = WINDOW_SECONDS + margin
        self.global_limit = global_limit
        self._interval = 1.0 / rate_per_second
        self._tolerance = (self.burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._turns = threading.Condition()
        self._tickets = 0
        self._serving = 0
        self._starts: deque[float] = deque(maxlen=self.limit)
        self._tat = -math.inf  # GCRA "theoretical arrival time" of the next request
        self._in_flight = threading.BoundedSemaphore(max_concurrency)

    @contextmanager
    def slot(self) -> Iterator[float]:
        """Hold one in-flight place while a request runs; yields the seconds spent waiting."""
        with self._in_flight:
            if self.global_limit:
                self._take_global_slot(self.global_limit)
            yield self.wait_turn()

    def wait_turn(self) -> float:
        """Block until a request may start under the window and burst rules; seconds waited.

        Requests are granted in the order they ask (a ticket queue), so none is overtaken
        while it sleeps: pages fetched ahead come back roughly in page order.
        """
        with self._turns:
            ticket = self._tickets
            self._tickets += 1
            while ticket != self._serving:
                self._turns.wait()
        waited = 0.0
        while True:  # only the holder of the current ticket runs this loop
            with self._turns:
                now = self._clock()
                ready = self._ready_at()
                if ready <= now:
                    self._starts.append(now)
                    self._tat = max(self._tat, now) + self._interval
                    self._serving += 1
                    self._turns.notify_all()
                    return waited
            self._sleep(ready - now)
            waited += ready - now

    def _ready_at(self) -> float:
        ready = self._tat - self._tolerance
        if len(self._starts) == self.limit:
            ready = max(ready, self._starts[0] + self.window)
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
