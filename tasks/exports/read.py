"""Streaming rows out of the database, in bounded memory, inside a read-only snapshot.

PostgreSQL: csv comes straight from `COPY (SELECT ...) TO STDOUT` (the server formats it,
the fastest path), parquet from ADBC as Arrow batches, json from a server-side cursor.
SQLite: `fetchmany` batches. One export on PostgreSQL sees one snapshot: the flow keeps a
REPEATABLE READ transaction open that exported it (`pg_export_snapshot()`), and every part's
transaction adopts it with `SET TRANSACTION SNAPSHOT`, so rows committed meanwhile are not seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import psycopg
import psycopg.errors
import pyarrow as pa
from psycopg import pq
from sqlalchemy.engine import URL, Engine

from tasks.db.read_only import check_snapshot_id, read_only_connection, session_settings

COPY_BUFFER_BYTES = 1 << 20
# Arrow batches of about 8 MB keep two parts in flight well under the worker's memory budget.
ARROW_BATCH_BYTES = 8 << 20
FETCH_ROWS = 5_000


@contextmanager
def exported_snapshot(engine: Engine) -> Iterator[tuple[str, Any]]:
    """A read-only REPEATABLE READ transaction that stays open, and its exported snapshot id
    (valid for other sessions only while this block runs)."""
    with read_only_connection(engine) as conn:
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        yield check_snapshot_id(str(snapshot)), conn


class CopyOut:
    """The rows of `sql` as csv (no header) from COPY TO STDOUT, in blocks of about 1 MB.
    The COPY goes through the extended protocol (PQsendQueryParams), so it is one statement
    whatever `sql` holds.

    Reads libpq's copy data directly (psycopg's public `pq` layer): psycopg's `Copy` object
    costs about a microsecond of Python per row, as much as the server's own work. `rows`
    holds the row count once the stream is exhausted. A stream left unfinished closes the
    connection, so the pool discards it instead of reusing it mid-COPY.
    """

    def __init__(self, conn: Any, sql: str) -> None:
        self.conn = conn
        self.sql = sql
        self.rows = 0

    def __iter__(self) -> Iterator[bytes]:
        pgconn = self.conn.pgconn
        pgconn.send_query_params(f"COPY ({self.sql}) TO STDOUT (FORMAT csv)".encode(), None)
        _check(pgconn.get_result(), pq.ExecStatus.COPY_OUT)
        finished = False
        try:
            buffer = bytearray()
            while (copied := pgconn.get_copy_data(0))[0] != -1:
                buffer += copied[1]
                if len(buffer) >= COPY_BUFFER_BYTES:
                    yield bytes(buffer)
                    buffer.clear()
            result = pgconn.get_result()
            while pgconn.get_result() is not None:
                pass
            _check(result, pq.ExecStatus.COMMAND_OK)
            self.rows = int(result.command_tuples or 0)
            finished = True
            if buffer:
                yield bytes(buffer)
        finally:
            if not finished:
                self.conn.close()


def _check(result: Any, expected: pq.ExecStatus) -> None:
    """Raise the server's error (as psycopg would) unless `result` has the expected status."""
    if result is None or result.status != expected:
        if result is None:
            raise psycopg.OperationalError("COPY ended without a result")
        sqlstate = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
        message = result.error_message.decode(errors="replace").strip()
        error_class = psycopg.errors.lookup(sqlstate) if sqlstate else psycopg.DatabaseError
        raise error_class(message or f"COPY failed ({result.status.name})")


def cursor_batches(conn: Any, sql: str, postgres: bool) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of `sql` as tuples, FETCH_ROWS at a time (server-side cursor on PostgreSQL,
    declared through the extended protocol: one statement)."""
    cursor = conn.cursor(name="batchflows_export") if postgres else conn.cursor()
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(FETCH_ROWS):
            yield rows
    finally:
        cursor.close()


def adbc_uri(url: URL) -> str:
    """The libpq URI ADBC connects with, from the engine's SQLAlchemy URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def arrow_batches(uri: str, sql: str, snapshot: str | None) -> Iterator[pa.RecordBatchReader]:
    """The rows of `sql` as a stream of Arrow batches (ADBC, binary COPY underneath), read in
    a REPEATABLE READ, READ ONLY transaction on `snapshot`, on a connection of its own.

    ADBC prepares `sql` (the extended protocol, one statement) before it copies it out."""
    with adbc.connect(uri) as conn, conn.cursor() as cursor:
        cursor.adbc_statement.set_options(
            **{"adbc.postgresql.batch_size_hint_bytes": str(ARROW_BATCH_BYTES)}
        )
        try:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if snapshot is not None:
                cursor.execute(f"SET TRANSACTION SNAPSHOT '{check_snapshot_id(snapshot)}'")
            for statement in session_settings():
                cursor.execute(statement)
            cursor.execute(sql)
            yield cursor.fetch_record_batch()
        finally:
            conn.rollback()
