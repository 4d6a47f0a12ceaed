"""What an export reads: the checked table or query, the SQL that reads it, and its parts.

A table's name and columns are looked up among the reflected ones before they reach SQL
(quoted by the dialect); a query or `where` must pass the read-only check and is then tried
(`LIMIT 0`) in a read-only session, so a mistake is reported against its parameter before any
file is written. A PostgreSQL table with a NOT NULL unique integer column (its primary key,
usually) is split into key ranges read concurrently; anything else is read as one stream.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any, Literal

import psycopg
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from tasks.db.engine import Backend, backend_of, raw_connection
from tasks.db.errors import first_line
from tasks.errors import InputError, SchemaError
from tasks.db.read_only import (
    check_condition,
    check_select,
    read_only_connection,
    run_user_sql,
)
from tasks.db.schema import Kind, TableSpec, qualified, quote, reflect_table

SAMPLE_ROWS = 200_000
Format = Literal["csv", "ndjson", "json", "parquet"]
Compression = Literal["gzip", "none"]


class ExportSource(BaseModel):
    """Checked rows to export: the SELECT that reads them and the integer key to split on."""

    backend: Backend
    projection: str
    relation: str
    conditions: list[str]
    key: str | None
    columns: list[str]
    label: str
    name: str

    def sql(self, low: int | None = None, high: int | None = None) -> str:
        """The SELECT for rows whose key is in [low, high) (an open end when None)."""
        conditions = list(self.conditions)
        if self.key is not None and low is not None:
            conditions.append(f"{self.key} >= {int(low)}")
        if self.key is not None and high is not None:
            conditions.append(f"{self.key} < {int(high)}")
        text = f"SELECT {self.projection} FROM {self.relation}"
        if conditions:
            text += " WHERE " + " AND ".join(conditions)
        if self.key is not None:
            text += f" ORDER BY {self.key}"
        return text


class KeyRange(BaseModel):
    """One part: rows with key in [low, high); None is an open end."""

    index: int
    low: int | None = None
    high: int | None = None


def check_source(
    engine: Engine,
    *,
    table: str | None,
    query: str | None,
    columns: list[str] | None,
    where: str | None,
) -> ExportSource:
    """Check the source parameters and describe the rows they select."""
    has_query = query is not None and bool(query.strip())
    if (table is None or not table.strip()) == (not has_query):
        raise InputError("parameters 'table' and 'query': give exactly one of them")
    backend = backend_of(engine)
    if query is not None and has_query:
        if columns is not None or where is not None:
            raise InputError(
                "parameters 'columns' and 'where' go with 'table'; put them in the query instead"
            )
        sql = check_select(query, "query")
        relation = f"({sql}) batchflows_q"
        names = _describe(engine, f"SELECT * FROM {relation}", "query")
        return ExportSource(
            backend=backend,
            projection="*",
            relation=relation,
            conditions=[],
            key=None,
            columns=names,
            label="query",
            name="query",
        )
    spec = reflect_table(engine, (table or "").strip())
    return _table_source(engine, spec, columns, where)


def _table_source(
    engine: Engine, spec: TableSpec, columns: list[str] | None, where: str | None
) -> ExportSource:
    dialect = engine.dialect
    known = [column.name for column in spec.columns]
    if columns is not None:
        missing = [name for name in columns if name not in known]
        if missing or not columns:
            raise SchemaError(
                f"parameter 'columns': table {spec.display_name} has no column "
                f"{', '.join(map(repr, missing)) or '(none given)'} (it has {', '.join(known)})"
            )
    chosen = columns or known
    projection = ", ".join(quote(dialect, name) for name in chosen)
    relation = qualified(dialect, spec)
    conditions = [f"({check_condition(where, 'where')})"] if where is not None else []
    if conditions:
        _describe(engine, f"SELECT {projection} FROM {relation} WHERE {conditions[0]}", "where")
    key = _integer_key(spec)
    backend = backend_of(engine)
    return ExportSource(
        backend=backend,
        projection=projection,
        relation=relation,
        conditions=conditions,
        key=quote(dialect, key) if key is not None and backend == "postgresql" else None,
        columns=chosen,
        label=f"table {spec.display_name}",
        name=spec.display_name,
    )


def _integer_key(spec: TableSpec) -> str | None:
    """A NOT NULL, unique, integer column to split on (the primary key comes first)."""
    for key in spec.unique_keys:
        if len(key) == 1:
            column = spec.column(key[0])
            if column.kind == Kind.INTEGER and not column.nullable:
                return column.name
    return None


def _describe(engine: Engine, sql: str, parameter: str) -> list[str]:
    """The column names of `sql`, tried read-only; a database error names `parameter`."""
    try:
        with read_only_connection(engine) as conn:
            cursor = run_user_sql(conn, f"{sql} LIMIT 0")
            return [d[0] for d in cursor.description]
    except (psycopg.Error, sqlite3.Error) as exc:
        raise InputError(
            f"parameter {parameter!r}: the database refused it: {first_line(exc)}"
        ) from exc


def key_ranges(
    conn: Any, source: ExportSource, chunk_size: int
) -> tuple[list[KeyRange], int | None]:
    """Split the source into ranges of about `chunk_size` rows (run inside the export's
    snapshot), and the row count when it was needed.

    Bounds are quantiles of the key, exact up to SAMPLE_ROWS rows and from a block sample
    beyond, so parts stay even however the keys are spread; the first and last range are
    open-ended, so no row can fall outside the parts.
    """
    if source.key is None:
        return [KeyRange(index=0)], None
    where = f" WHERE {' AND '.join(source.conditions)}" if source.conditions else ""
    count = int(run_user_sql(conn, f"SELECT count(*) FROM {source.relation}{where}").fetchone()[0])
    parts = max(1, math.ceil(count / chunk_size))
    if parts == 1:
        return [KeyRange(index=0)], count
    percent = min(100.0, 100.0 * SAMPLE_ROWS / count)
    # Numbers we computed, written as literals: no parameters, so a '%' in the user's
    # condition is never read as a placeholder.
    fractions = ", ".join(repr(i / parts) for i in range(1, parts))
    quantiles = run_user_sql(
        conn,
        f"SELECT percentile_disc(ARRAY[{fractions}]::float8[]) WITHIN GROUP "
        f"(ORDER BY {source.key}) FROM {source.relation} "
        f"TABLESAMPLE SYSTEM ({float(percent)!r}) REPEATABLE (0){where}",
    ).fetchone()[0]
    bounds = sorted({int(value) for value in quantiles or [] if value is not None})
    edges: list[int | None] = [None, *bounds, None]
    ranges = [KeyRange(index=i, low=edges[i], high=edges[i + 1]) for i in range(len(edges) - 1)]
    return ranges, count
