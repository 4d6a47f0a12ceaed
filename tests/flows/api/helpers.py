"""Helpers shared by the API flow tests: target tables and reading them back."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tasks.database import get_engine
from tests.api_server import FakeApi, RemoteApi

FAST: dict[str, Any] = {"backoff_seconds": 0.01, "breaker_pause_seconds": 0.1}
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused


def create_items_table(database_url: str, name: str = "items") -> None:
    """The pull target: id (primary key), name, updated_at."""
    metadata = sa.MetaData()
    sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text),
        sa.Column("updated_at", sa.Text),
    )
    metadata.create_all(get_engine(database_url))


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
