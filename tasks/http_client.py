"""One pooled `httpx.Client` per process, so every request of every run reuses connections.

Timeouts are always set: the client carries defaults, and each request passes the run's own
`timeout_seconds`. Authentication is never stored on the shared client; callers pass their
headers per request, so runs with different credentials can share the pool.
"""

from __future__ import annotations

import threading

import httpx

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# Enough connections for the largest max_concurrency a flow accepts, with room for two runs.
POOL_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32)

_client: httpx.Client | None = None
_lock = threading.Lock()


def shared_client() -> httpx.Client:
    """The process-wide client, created on first use (thread safe)."""
    global _client  # noqa: PLW0603 - one client per process is the point
    with _lock:
        if _client is None or _client.is_closed:
            _client = httpx.Client(
                timeout=DEFAULT_TIMEOUT,
                limits=POOL_LIMITS,
                headers={"User-Agent": "batchflows"},
                follow_redirects=True,
            )
        return _client


def request_timeout(seconds: float) -> httpx.Timeout:
    """A per-request timeout: `seconds` for reading, writing and the pool, connect at most 10 s."""
    return httpx.Timeout(seconds, connect=min(seconds, 10.0))


def close_shared_client() -> None:
    """Close the pool (tests and forked workers); the next call opens a new one."""
    global _client  # noqa: PLW0603
    with _lock:
        if _client is not None:
            _client.close()
            _client = None
