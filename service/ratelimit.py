"""Per-key submission limit: at most N requests in any sliding 60-second window.

An exact sliding log per key, in process (one service process; several would each allow N).
Unlike tasks/common/limiter.py, which waits for its turn, this refuses at once and says when to
come back, for a 429 with Retry-After.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0


class KeyRateLimiter:
    """Sliding-window request log per key."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._starts: dict[str, deque[float]] = {}

    def acquire(self, key: str) -> int | None:
        """Record one request for `key`; None if allowed, else whole seconds until one is."""
        now = self._clock()
        with self._lock:
            log = self._starts.setdefault(key, deque())
            while log and now - log[0] >= WINDOW_SECONDS:
                log.popleft()
            if len(log) >= self.per_minute:
                return max(1, math.ceil(log[0] + WINDOW_SECONDS - now))
            log.append(now)
            return None
