"""Gathering a report's data: every query in one read-only snapshot, values bound.

SQLite keeps timestamps as text (`YYYY-MM-DD HH:MM:SS`, UTC), so date and time values are
bound in that form there; PostgreSQL gets them as typed values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine

from tasks.db.bookkeeping import ensure_bookkeeping
from tasks.db.engine import backend_of
from tasks.db.select import Rows, Statement, fetch_all
from tasks.reports.definition import ReportDefinition


def driver_values(backend: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` in the form `backend` compares correctly with what it stores."""
    if backend == "postgresql":
        return dict(values)
    return {name: _sqlite_value(value) for name, value in values.items()}


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def gather(engine: Engine, definition: ReportDefinition, values: Mapping[str, Any]) -> list[Rows]:
    """Every query's rows, in the definition's order, from one consistent snapshot.

    The bookkeeping tables are created first when missing, so a report over them (the daily
    summary, shipped in reports/; an ad-hoc query may not read them) runs on a fresh database.
    """
    ensure_bookkeeping(engine)
    backend = backend_of(engine)
    statements = [
        Statement(f"report {definition.name!r} query {q.name!r}", q.sql_for(backend))
        for q in definition.queries
    ]
    values = driver_values(backend, values)
    results = fetch_all(engine, statements, values, bookkeeping=definition.shipped)
    return [
        Rows(q.name, r.columns, r.rows) for q, r in zip(definition.queries, results, strict=True)
    ]
