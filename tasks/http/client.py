"""One pooled `httpx.Client` per process, so every request of every run reuses connections.

Also where API URLs are built from the flows' `base_url` and `path` parameters.

Timeouts are always set: the client carries defaults, each request passes the run's own
`request_timeout_seconds`, and a deadline bounds each request as a whole (`tasks.http.deadline`).
The client never follows redirects by itself: the caller decides which it follows.
Authentication is never stored on the shared client; callers pass their
headers per request, so runs with different credentials can share the pool.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import httpx

from tasks.errors import InputError
from tasks.http.deadline import DeadlineBackend
from tasks.http.redact import redact_url

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
                transport=_deadline_transport(),
                timeout=DEFAULT_TIMEOUT,
                headers={"User-Agent": "batchflows"},
                follow_redirects=False,
            )
        return _client


def _deadline_transport() -> httpx.HTTPTransport:
    """httpx's own transport, its connections made by the deadline-aware backend."""
    transport = httpx.HTTPTransport(limits=POOL_LIMITS)
    # httpx takes no network backend; its pool is httpcore's, which does (tasks.http.deadline).
    transport._pool._network_backend = DeadlineBackend()
    return transport


def request_timeout(seconds: float) -> httpx.Timeout:
    """A per-request timeout: `seconds` for reading, writing and the pool, connect at most 10 s."""
    return httpx.Timeout(seconds, connect=min(seconds, 10.0))


def endpoint(base_url: str, path: str) -> str:
    """`base_url` joined with `path`, checked to be an absolute http(s) URL without credentials.

    Credentials inside the URL (`https://user:password@host`) are refused: they would reach
    logs, results and tables; a Secret block named by `auth_block` holds them instead.
    """
    url = base_url.rstrip("/") + "/" + path.lstrip("/") if path else base_url
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InputError(f"parameter 'base_url': {redact_url(url)!r} is not a URL ({exc})") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputError(
            f"parameter 'base_url': {redact_url(base_url)!r} must be an absolute http:// or "
            "https:// URL"
        )
    if parsed.userinfo or "@" in urlsplit(url).netloc:
        raise InputError(
            f"parameter 'base_url': {redact_url(base_url)!r} carries credentials; save them in "
            "a Prefect Secret block and pass its name as 'auth_block'"
        )
    return url


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of `url`, as written in it (for matching stored URLs)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def same_origin(url: httpx.URL | str, other: httpx.URL | str) -> bool:
    """Whether two URLs share scheme, host and port (defaults filled in), as browsers judge."""
    first, second = httpx.URL(str(url)), httpx.URL(str(other))
    return _origin(first) == _origin(second)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port or default
