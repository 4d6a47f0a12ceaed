"""Upsert one page of API records on their key, with the source's sync state, in ONE transaction.

The same path as the CSV import's `tasks.imports.writer`, for records (dicts) instead of Arrow
chunks: on PostgreSQL the page is COPYed into a temporary staging table, then one set-based
`INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE (...) IS DISTINCT FROM (...)`, so `updated`
counts only rows whose values really changed; on SQLite a temporary table and
`INSERT ... ON CONFLICT` likewise. The `batchflows_sync_state` row (high-water mark, cursor,
record count) is written in the same transaction: a page is either stored with the state that
covers it, or neither.

A record's fields that are not columns of the table are ignored (the caller reports them);
a column the page's records lack is NULL for them. A key repeated within a page keeps its
last occurrence.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from tasks.api.pagination import Record
from tasks.db.bookkeeping import ensure_bookkeeping, sync_state
from tasks.db.engine import backend_of, raw_connection
from tasks.db.errors import database_errors
from tasks.db.schema import ColumnSpec, Kind, TableSpec, qualified, quote
from tasks.errors import SchemaError

STAGE = "batchflows_api_stage"


class RecordTarget(BaseModel):
    """The reflected table the records go to, and the columns that identify a record."""

    table: TableSpec
    key: list[str]

    @classmethod
    def check(cls, table: TableSpec, key: list[str]) -> RecordTarget:
        """The target, once `key` is known to be columns of `table` with a unique constraint."""
        if not key:
            raise SchemaError("parameter 'key': give at least one column that identifies a record")
        names = {column.name for column in table.columns}
        missing = [name for name in key if name not in names]
        if missing:
            raise SchemaError(
                f"parameter 'key': table {table.display_name} has no column "
                f"{', '.join(map(repr, missing))}"
            )
        if not table.has_unique_key(key):
            raise SchemaError(
                f"parameter 'key': table {table.display_name} has no primary key or unique "
                f"constraint on ({', '.join(key)}); upserts need one"
            )
        return cls(table=table, key=key)

    def columns_of(self, records: Sequence[Record]) -> list[str]:
        """The table's columns that the records carry (key first), in table order."""
        present = set(self.key).union(*(record.keys() for record in records))
        ordered = [column.name for column in self.table.columns if column.name in present]
        return self.key + [name for name in ordered if name not in self.key]

    def ignored_fields(self, records: Sequence[Record]) -> set[str]:
        """Fields of the records that are not columns of the table."""
        names = {column.name for column in self.table.columns}
        return set().union(*(record.keys() for record in records)) - names


class SyncUpdate(BaseModel):
    """What the page changes in `batchflows_sync_state`; None keeps the stored value."""

    source: str
    last_value: str | None = None
    cursor: str | None = None
    records: int = 0


class UpsertCounts(BaseModel):
    """What one page did to the table."""

    records: int
    inserted: int
    updated: int
    unchanged: int


def read_sync_state(engine: Engine, source: str) -> tuple[str | None, str | None]:
    """The stored (last_value, cursor) of `source`, or (None, None) before its first run."""
    ensure_bookkeeping(engine)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(sync_state.c.last_value, sync_state.c.cursor).where(
                sync_state.c.source == source
            )
        ).first()
    return (None, None) if row is None else (row[0], row[1])


def upsert_page(
    engine: Engine, target: RecordTarget, records: Sequence[Record], state: SyncUpdate
) -> UpsertCounts:
    """Upsert `records` and write `state`, in one transaction (see module docstring)."""
    ensure_bookkeeping(engine)
    unique = list({_key_of(record, target.key): record for record in records}.values())
    writer: RecordWriter = (
        PostgresRecordWriter(engine, target)
        if backend_of(engine) == "postgresql"
        else SqliteRecordWriter(engine, target)
    )
    inserted, updated = writer.write(unique, state)
    return UpsertCounts(
        records=len(records),
        inserted=inserted,
        updated=updated,
        unchanged=len(records) - inserted - updated,
    )


class RecordWriter(ABC):
    """The upsert of one page; subclasses supply each database's statements."""

    placeholder = "%s"

    def __init__(self, engine: Engine, target: RecordTarget) -> None:
        self.engine = engine
        self.target = target
        self.dialect = engine.dialect
        self.table = qualified(self.dialect, target.table)

    def write(self, records: list[Record], state: SyncUpdate) -> tuple[int, int]:
        """(inserted, updated) after committing the page and its state."""
        names = self.target.columns_of(records)
        with database_errors(state.source), raw_connection(self.engine) as conn:
            return self.transaction(conn, names, records, state)

    @abstractmethod
    def transaction(
        self, conn: Any, names: list[str], records: list[Record], state: SyncUpdate
    ) -> tuple[int, int]:
        """Stage, upsert and record the state inside the backend's transaction."""

    def quoted(self, names: list[str]) -> tuple[list[str], list[str]]:
        """(all columns, non-key columns), quoted."""
        key = set(self.target.key)
        return (
            [quote(self.dialect, name) for name in names],
            [quote(self.dialect, name) for name in names if name not in key],
        )

    def save_state(self, cur: Any, state: SyncUpdate) -> None:
        """Upsert the source's sync-state row; a None field keeps the stored value."""
        p = self.placeholder
        cur.execute(
            "INSERT INTO batchflows_sync_state (source, cursor, last_value, records, updated_at) "
            f"VALUES ({p}, {p}, {p}, {p}, CURRENT_TIMESTAMP) ON CONFLICT (source) DO UPDATE SET "
            "cursor = COALESCE(excluded.cursor, batchflows_sync_state.cursor), "
            "last_value = COALESCE(excluded.last_value, batchflows_sync_state.last_value), "
            "records = batchflows_sync_state.records + excluded.records, "
            "updated_at = excluded.updated_at",
            (state.source, state.cursor, state.last_value, state.records),
        )


class PostgresRecordWriter(RecordWriter):
    """COPY into a temporary staging table, then one set-based INSERT ... ON CONFLICT."""

    def transaction(
        self, conn: Any, names: list[str], records: list[Record], state: SyncUpdate
    ) -> tuple[int, int]:
        """The page and its state in one psycopg transaction."""
        # A transaction left open on a pooled connection would turn ours into a savepoint.
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        counts = (0, 0)
        with conn.transaction():
            cur = conn.cursor()
            if records:
                counts = self.upsert(cur, names, records)
            self.save_state(cur, state)
        return counts

    def upsert(self, cur: Any, names: list[str], records: list[Record]) -> tuple[int, int]:
        """(inserted, really changed) after COPY to staging and one INSERT ... ON CONFLICT."""
        columns, non_key = self.quoted(names)
        listed = ", ".join(columns)
        cur.execute(
            f"CREATE TEMP TABLE {STAGE} ON COMMIT DROP AS SELECT {listed} FROM {self.table} "
            "WITH NO DATA"
        )
        with cur.copy(f"COPY {STAGE} ({listed}) FROM STDIN") as copy:
            for record in records:
                copy.write_row([_as_text(record.get(name)) for name in names])
        key = ", ".join(quote(self.dialect, name) for name in self.target.key)
        insert = f"INSERT INTO {self.table} AS t ({listed}) SELECT {listed} FROM {STAGE}"
        if not non_key:
            cur.execute(f"{insert} ON CONFLICT ({key}) DO NOTHING")
            return int(cur.rowcount), 0
        kinds = {quote(self.dialect, c.name): c for c in self.target.table.columns}
        assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in non_key)
        current = ", ".join(_comparable(f"t.{c}", kinds[c]) for c in non_key)
        incoming = ", ".join(_comparable(f"EXCLUDED.{c}", kinds[c]) for c in non_key)
        cur.execute(
            f"WITH written AS ({insert} ON CONFLICT ({key}) DO UPDATE SET {assignments} "
            f"WHERE ({current}) IS DISTINCT FROM ({incoming}) RETURNING (xmax = 0) AS inserted) "
            "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) "
            "FROM written"
        )
        inserted, updated = cur.fetchone()
        return int(inserted), int(updated)


class SqliteRecordWriter(RecordWriter):
    """The embedded default: a temporary table, then INSERT ... ON CONFLICT."""

    placeholder = "?"

    def transaction(
        self, conn: Any, names: list[str], records: list[Record], state: SyncUpdate
    ) -> tuple[int, int]:
        """The page and its state between BEGIN IMMEDIATE and COMMIT."""
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            counts = self.upsert(cur, names, records) if records else (0, 0)
            self.save_state(cur, state)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return counts

    def upsert(self, cur: Any, names: list[str], records: list[Record]) -> tuple[int, int]:
        """(inserted, really changed): existing keys counted first, then the upsert's rows."""
        columns, non_key = self.quoted(names)
        listed = ", ".join(columns)
        cur.execute(f"DROP TABLE IF EXISTS temp.{STAGE}")
        cur.execute(f"CREATE TEMP TABLE {STAGE} AS SELECT {listed} FROM {self.table} WHERE 0")
        marks = ", ".join("?" for _ in names)
        cur.executemany(
            f"INSERT INTO temp.{STAGE} ({listed}) VALUES ({marks})",
            [[_as_sqlite(record.get(name)) for name in names] for record in records],
        )
        key = [quote(self.dialect, name) for name in self.target.key]
        join = " AND ".join(f"s.{k} = t.{k}" for k in key)
        existing = cur.execute(
            f"SELECT count(*) FROM temp.{STAGE} s JOIN {self.table} t ON {join}"
        ).fetchone()[0]
        insert = f"INSERT INTO {self.table} ({listed}) SELECT {listed} FROM temp.{STAGE} WHERE 1"
        if non_key:
            assignments = ", ".join(f"{c} = excluded.{c}" for c in non_key)
            changed = " OR ".join(f"{self.table}.{c} IS NOT excluded.{c}" for c in non_key)
            conflict = f"DO UPDATE SET {assignments} WHERE {changed}"
        else:
            conflict = "DO NOTHING"
        cur.execute(f"{insert} ON CONFLICT ({', '.join(key)}) {conflict}")
        written = int(cur.rowcount)
        cur.execute(f"DROP TABLE temp.{STAGE}")
        inserted = len(records) - int(existing)
        return inserted, written - inserted


def _key_of(record: Record, key: list[str]) -> str:
    return json.dumps([record.get(name) for name in key], sort_keys=True, default=str)


def _comparable(expression: str, column: ColumnSpec) -> str:
    """Types without an equality operator (json, xml, ...) compare by jsonb or text."""
    if column.kind == Kind.JSON and column.sql_type.upper() == "JSON":
        return f"{expression}::jsonb"
    return f"{expression}::text" if column.kind == Kind.OTHER else expression


def _as_text(value: Any) -> str | None:
    """A JSON value as PostgreSQL's COPY text input reads it for any column type."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _as_sqlite(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value
