"""Helpers shared by the API flow tests: reading tables back, the common flow arguments."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from samples.api_server import FakeApi, RemoteApi
from tasks.db.engine import get_engine

FAST: dict[str, Any] = {"backoff_seconds": 0.01, "breaker_pause_seconds": 0.1}
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused


def rows(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """All rows of a query against the test database."""
    with get_engine(database_url).connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def flow_arguments(api: FakeApi | RemoteApi, database_url: str, **specific: Any) -> dict[str, Any]:
    """What every API flow test passes: the server, key `id`, 100 requests/s, fast retries."""
    return {
        "base_url": api.url,
        "key": ["id"],
        "rate_limit_per_second": 100,
        "database": database_url,
        **FAST,
        **specific,
    }
