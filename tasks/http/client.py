"""One pooled `httpx.Client` per process, so every request of every run reuses connections.

Also where API URLs are built from the flows' `base_url` and `path` parameters.

Timeouts are always set: the client carries defaults, and each request passes the run's own
`timeout_seconds`. Authentication is never stored on the shared client; callers pass their
headers per request, so runs with different credentials can share the pool.
"""

from __future__ import annotations

import threading

import httpx

from tasks.errors import InputError

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


def endpoint(base_url: str, path: str) -> str:
    """`base_url` joined with `path`, checked to be an absolute http(s) URL."""
    url = base_url.rstrip("/") + "/" + path.lstrip("/") if path else base_url
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InputError(f"parameter 'base_url': {url!r} is not a URL ({exc})") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputError(
            f"parameter 'base_url': {base_url!r} must be an absolute http:// or https:// URL"
        )
    return url
