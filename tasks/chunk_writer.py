"""Apply one chunk in ONE transaction: its rows, its rejects and its ledger row, or nothing.

Chunks are parsed, validated and staged concurrently but applied one after another: chunk k
waits (polling the ledger) until the chunk before it has committed. Skip and error modes go in
file order, so the first occurrence of a key reaches the table first. Update mode goes in
reverse file order and records the keys it applied in `batchflows_claims`; an earlier
occurrence of a claimed key is superseded, so the last occurrence wins and the counts are the
net change (an identical re-import updates nothing). One import never deadlocks with itself.
On PostgreSQL the wait comes after the chunk is COPYed into its temporary staging table, so
staging overlaps with the previous chunk's apply.

The ledger row is claimed first (`INSERT ... ON CONFLICT DO NOTHING`): if another run of the
same import has committed this chunk, the claim finds it, the transaction rolls back and the
committed counts are reported, so a chunk is applied exactly once however it is retried.

Rows the database itself refuses (a CHECK or foreign key, another unique index, a value the
validation let through) do not fail the chunk: the apply is bisected under savepoints until
the refused rows are isolated, and they become rejects carrying the database's message.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import psycopg.errors
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from tasks.csv_parse import Reject
from tasks.csv_plan import ChunkSpec
from tasks.database import backend_of, raw_connection
from tasks.errors import ConflictError, ErrorRateExceeded, InputError, TargetError
from tasks.import_plan import ImportJob
from tasks.schema import Kind, qualified, quote

ORD = "batchflows_ord"
KEY_HI = "batchflows_key_hi"
KEY_LO = "batchflows_key_lo"
STAGE = "batchflows_stage"
WAIT_FIRST_SECONDS = 0.002
WAIT_MAX_SECONDS = 0.05

IntArray = npt.NDArray[np.int64]


class ChunkCounts(BaseModel):
    """What one chunk did, and the import's running totals through it."""

    index: int
    rows: int
    inserted: int
    updated: int
    skipped: int
    failed: int
    cum_rows: int
    cum_failed: int
    already_committed: bool = False


@dataclass
class StagedChunk:
    """A parsed, validated, de-duplicated chunk, ready to write.

    `values` holds the typed rows to stage with their ordinal (plus the key hash in update
    mode); `lines[ordinal]` is each row's physical line. `records`, when given, returns the
    rows' original CSV bytes, which PostgreSQL may COPY as they are.
    """

    chunk: ChunkSpec
    rows: int
    values: pa.Table
    lines: IntArray
    rejects: list[Reject]
    superseded: int
    raw_of: Callable[[int], str]
    records: Callable[[], bytes] | None = None


class RowRefused(Exception):
    """The database refused some row of a batch; bisection finds which."""


class _RecordsMismatch(Exception):
    """COPY of the original records did not stage exactly the expected rows."""


class _AlreadyCommitted(Exception):
    """The ledger already holds this chunk: roll back and report the committed counts."""


class ImportStopped(InputError):
    """The import was marked failed while this chunk waited for its turn."""


def write_chunk(engine: Engine, job: ImportJob, staged: StagedChunk) -> ChunkCounts:
    """Apply `staged` to the target in one transaction (see the module docstring)."""
    writer: ChunkWriter
    if backend_of(engine) == "postgresql":
        writer = PostgresWriter(engine, job)
    else:
        writer = SqliteWriter(engine, job)
    return writer.write(staged)


class ChunkWriter(ABC):
    """The apply algorithm; subclasses supply each database's statements."""

    placeholder = "%s"
    stage = STAGE

    def __init__(self, engine: Engine, job: ImportJob) -> None:
        self.engine = engine
        self.job = job
        dialect = engine.dialect
        self.target = qualified(dialect, job.table)
        self.columns = [quote(dialect, c) for c in job.columns]
        self.key = [quote(dialect, c) for c in job.options.key]
        key_set = set(job.options.key)
        self.non_key = [quote(dialect, c) for c in job.columns if c not in key_set]
        self.kinds = {quote(dialect, c.name): (c.kind, c.sql_type) for c in job.table.columns}
        self.refused: dict[int, Reject] = {}
        self.lines: IntArray = np.zeros(0, dtype=np.int64)

    def write(self, staged: StagedChunk) -> ChunkCounts:
        self.lines = staged.lines
        with raw_connection(self.engine) as conn, self.translate_errors(staged.chunk):
            try:
                return self.transaction(conn, staged)
            except _AlreadyCommitted:
                return self.committed_counts(conn, staged.chunk.index)

    @abstractmethod
    def transaction(self, conn: Any, staged: StagedChunk) -> ChunkCounts:
        """Stage the rows, wait for the previous chunk and apply, in one transaction."""

    def prepare(self, cur: Any, staged: StagedChunk) -> None:
        """What needs no turn: claim the ledger row and store the validation rejects."""
        if not self.claim(cur, staged.chunk):
            raise _AlreadyCommitted
        self.insert_rejects(cur, staged.chunk.index, staged.rejects)

    def apply_in_transaction(
        self, cur: Any, staged: StagedChunk, previous: tuple[int, int]
    ) -> ChunkCounts:
        """Once the previous chunk committed: apply, then the counts; inside the txn."""
        chunk = staged.chunk
        ordinals = np.arange(len(staged.lines), dtype=np.int64)
        if self.job.options.reverse:
            self.drop_claimed_keys(cur)
        inserted, updated = self.apply_rows(cur, staged, ordinals)
        if self.job.options.reverse:
            self.claim_keys(cur)
        failed = len(staged.rejects) + len(self.refused)
        counts = ChunkCounts(
            index=chunk.index,
            rows=staged.rows,
            inserted=inserted,
            updated=updated,
            # Staged rows not written were identical, or superseded by a later chunk.
            skipped=len(ordinals) - len(self.refused) - inserted - updated + staged.superseded,
            failed=failed,
            cum_rows=previous[0] + staged.rows,
            cum_failed=previous[1] + failed,
        )
        if counts.inserted + counts.updated + counts.skipped + counts.failed != counts.rows:
            raise AssertionError(f"chunk {chunk.index}: counts do not add up: {counts}")
        self.check_error_rate(counts)
        self.insert_rejects(cur, chunk.index, list(self.refused.values()))
        self.execute(
            cur,
            "UPDATE batchflows_chunks SET rows = {p}, inserted = {p}, updated = {p}, "
            "skipped = {p}, failed = {p}, cum_rows = {p}, cum_failed = {p} "
            "WHERE import_id = {p} AND chunk_index = {p}",
            (
                counts.rows,
                counts.inserted,
                counts.updated,
                counts.skipped,
                counts.failed,
                counts.cum_rows,
                counts.cum_failed,
                self.job.import_id,
                chunk.index,
            ),
        )
        return counts

    def apply_rows(self, cur: Any, staged: StagedChunk, ordinals: IntArray) -> tuple[int, int]:
        """(inserted, updated) for the staged rows `ordinals`; refused rows are bisected out
        into `self.refused`."""
        if len(ordinals) == 0:
            return 0, 0
        try:
            with self.savepoint(cur):
                return self.apply(cur, int(ordinals[0]), int(ordinals[-1]))
        except RowRefused as exc:
            if len(ordinals) == 1:
                ordinal = int(ordinals[0])
                self.refused[ordinal] = Reject(
                    line=int(staged.lines[ordinal]),
                    raw=staged.raw_of(ordinal),
                    errors={"_database": _first_line(exc.__cause__ or exc)},
                )
                return 0, 0
            middle = len(ordinals) // 2
            first = self.apply_rows(cur, staged, ordinals[:middle])
            second = self.apply_rows(cur, staged, ordinals[middle:])
            return first[0] + second[0], first[1] + second[1]

    def apply(self, cur: Any, low: int, high: int) -> tuple[int, int]:
        """(inserted, updated) for the staged rows with ordinals in [low, high]."""
        select = (
            f"SELECT {', '.join(self.columns)} FROM {self.stage} "
            f"WHERE {ORD} BETWEEN {{p}} AND {{p}}"
        )
        insert = f"INSERT INTO {self.target} ({', '.join(self.columns)}) {select}"
        params = (low, high)
        mode = self.job.options.on_conflict
        if mode == "error":
            try:
                with self.savepoint(cur):
                    return self.rowcount(cur, insert, params), 0
            except RowRefused:
                self.raise_if_key_exists(cur)
                raise
        if mode == "skip" or not self.non_key:
            do_nothing = f"{insert} ON CONFLICT ({', '.join(self.key)}) DO NOTHING"
            return self.rowcount(cur, do_nothing, params), 0
        return self.upsert(cur, insert, params)

    def raise_if_key_exists(self, cur: Any) -> None:
        """In error mode: name the first staged line whose key the table already holds."""
        join = " AND ".join(f"s.{k} = t.{k}" for k in self.key)
        row = self.fetchone(
            cur,
            f"SELECT s.{ORD}, {', '.join(f's.{k}' for k in self.key)} FROM {self.stage} s "
            f"JOIN {self.target} t ON {join} ORDER BY s.{ORD} LIMIT 1",
            (),
        )
        if row is None:
            return
        key = ", ".join(
            f"{name}={value!r}" for name, value in zip(self.job.options.key, row[1:], strict=True)
        )
        raise ConflictError(
            f"{self.job.source} line {self.lines[int(row[0])]}: key ({key}) already exists in "
            f"table {self.job.table.display_name}; on_conflict='error' stops the import here "
            "(chunks before this one stay committed). Use on_conflict='skip' or 'update' to "
            "accept existing keys"
        )

    def drop_claimed_keys(self, cur: Any) -> None:
        """Unstage rows whose key a later chunk of this import applied (they count skipped)."""
        self.execute(
            cur,
            f"DELETE FROM {self.stage} WHERE EXISTS (SELECT 1 FROM batchflows_claims c "
            f"WHERE c.import_id = {{p}} AND c.key_hi = {self.stage}.{KEY_HI} "
            f"AND c.key_lo = {self.stage}.{KEY_LO})",
            (self.job.import_id,),
        )

    def claim_keys(self, cur: Any) -> None:
        """Record the keys this chunk applied (not those the database refused)."""
        for ordinal in self.refused:
            self.execute(cur, f"DELETE FROM {self.stage} WHERE {ORD} = {{p}}", (ordinal,))
        self.execute(
            cur,
            f"INSERT INTO batchflows_claims (import_id, key_hi, key_lo) "
            f"SELECT {{p}}, {KEY_HI}, {KEY_LO} FROM {self.stage}",
            (self.job.import_id,),
        )

    def check_error_rate(self, counts: ChunkCounts) -> None:
        limit = self.job.max_error_rate
        if limit >= 1.0 or counts.cum_rows == 0:
            return
        rate = counts.cum_failed / counts.cum_rows
        if rate > limit:
            committed = counts.cum_rows - counts.rows
            raise ErrorRateExceeded(
                f"{self.job.source}: {counts.cum_failed} of {counts.cum_rows} rows rejected "
                f"({rate:.1%}), over max_error_rate {limit:.1%}; stopped before committing "
                f"chunk {counts.index} ({committed} rows in earlier chunks stay committed). "
                f"The rejects are in batchflows_rejects for import {self.job.import_id!r}"
            )

    def wait_for_previous(self, cur: Any, index: int) -> tuple[int, int]:
        """Running totals (rows, failed) through the chunk applied before `index`."""
        previous = self.job.previous(index)
        if previous is None:
            return 0, 0
        delay = WAIT_FIRST_SECONDS
        while True:
            self.await_turn(cur, previous)
            row = self.fetchone(
                cur,
                "SELECT i.status, c.cum_rows, c.cum_failed FROM batchflows_imports i "
                "LEFT JOIN batchflows_chunks c ON c.import_id = i.import_id "
                "AND c.chunk_index = {p} WHERE i.import_id = {p}",
                (previous, self.job.import_id),
            )
            if row is None or row[0] != "running":
                status = "missing" if row is None else row[0]
                raise ImportStopped(
                    f"import {self.job.import_id!r} is {status}: chunk {index} stops waiting "
                    f"for chunk {previous}"
                )
            if row[1] is not None:
                return int(row[1]), int(row[2])
            time.sleep(delay)
            delay = min(delay * 1.5, WAIT_MAX_SECONDS)

    def claim(self, cur: Any, chunk: ChunkSpec) -> bool:
        """Insert the chunk's ledger row; False if a committed run already holds it."""
        row = self.fetchone(
            cur,
            "INSERT INTO batchflows_chunks (import_id, chunk_index, start_byte, end_byte, "
            "first_line, rows, inserted, updated, skipped, failed, cum_rows, cum_failed) "
            "VALUES ({p}, {p}, {p}, {p}, {p}, 0, 0, 0, 0, 0, 0, 0) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            (self.job.import_id, chunk.index, chunk.start, chunk.end, chunk.first_line),
        )
        return row is not None

    def committed_counts(self, conn: Any, index: int) -> ChunkCounts:
        names = ("rows", "inserted", "updated", "skipped", "failed", "cum_rows", "cum_failed")
        row = self.fetchone(
            conn.cursor(),
            f"SELECT {', '.join(names)} FROM batchflows_chunks "
            "WHERE import_id = {p} AND chunk_index = {p}",
            (self.job.import_id, index),
        )
        return ChunkCounts(
            index=index, already_committed=True, **dict(zip(names, row, strict=True))
        )

    def await_turn(self, cur: Any, previous: int) -> None:
        """Block until chunk `previous` is likely done; the ledger has the final word."""
        del cur, previous

    def execute(self, cur: Any, sql: str, params: Sequence[Any]) -> Any:
        cur.execute(sql.format(p=self.placeholder), params)
        return cur

    def fetchone(self, cur: Any, sql: str, params: Sequence[Any]) -> Any:
        return self.execute(cur, sql, params).fetchone()

    def rowcount(self, cur: Any, sql: str, params: Sequence[Any]) -> int:
        return int(self.execute(cur, sql, params).rowcount)

    @abstractmethod
    def upsert(self, cur: Any, insert: str, params: tuple[int, int]) -> tuple[int, int]:
        """Insert new keys, update rows that differ; (inserted, updated)."""

    @abstractmethod
    def savepoint(self, cur: Any) -> AbstractContextManager[None]:
        """A savepoint that turns row-level refusals into RowRefused."""

    @abstractmethod
    def insert_rejects(self, cur: Any, index: int, rejects: list[Reject]) -> None:
        """Store rejects for the error report, in the chunk's transaction."""

    @abstractmethod
    def translate_errors(self, chunk: ChunkSpec) -> AbstractContextManager[None]:
        """Turn driver errors into TargetError, transient where a retry may succeed."""


class PostgresWriter(ChunkWriter):
    """COPY into a temporary staging table, then set-based INSERT ... ON CONFLICT."""

    def transaction(self, conn: Any, staged: StagedChunk) -> ChunkCounts:
        # A transaction left open on a pooled connection would make ours a savepoint that
        # never commits; start from a clean slate.
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        with conn.transaction():
            cur = conn.cursor()
            # Validation reads a timestamptz without offset as UTC, so must the server; the
            # advisory lock, held until commit, is what the next chunk waits on.
            # Commit without waiting for the WAL flush: rows and ledger row stay atomic, so a
            # server crash can only lose whole chunks, which the resume then redoes; the
            # import's final synchronous commit flushes them all before it reports success.
            cur.execute(
                "SELECT set_config('TimeZone', 'UTC', true), "
                "set_config('synchronous_commit', 'off', true), "
                "pg_advisory_xact_lock(hashtext(%s), %s)",
                (self.job.import_id, staged.chunk.index),
            )
            if staged.records is None or not self._stage_records(cur, staged.records, staged):
                self._stage_values(cur, staged.values)
            self.prepare(cur, staged)
            previous = self.wait_for_previous(cur, staged.chunk.index)
            return self.apply_in_transaction(cur, staged, previous)

    def _stage_records(self, cur: Any, records: Callable[[], bytes], staged: StagedChunk) -> bool:
        """COPY the rows' original CSV bytes: the server parses them, nothing is re-encoded.

        Validation accepted only values PostgreSQL reads the same way, yet anything odd (a
        value it refuses, mixed line endings, a bare `\\.` line that ends COPY early) rolls
        this back and the typed path stages the chunk instead.
        """
        expected = len(staged.lines)
        try:
            with cur.connection.transaction():
                cur.execute(
                    f"CREATE TEMP TABLE {STAGE} ON COMMIT DROP AS "
                    f"SELECT {', '.join(self.columns)} FROM {self.target} WITH NO DATA; "
                    f"ALTER TABLE {STAGE} ADD COLUMN {ORD} bigint "
                    "GENERATED ALWAYS AS IDENTITY (MINVALUE 0 START WITH 0)"
                )
                delimiter = _literal(self.job.options.dialect.delimiter)
                with cur.copy(
                    f"COPY {STAGE} ({', '.join(self.columns)}) FROM STDIN "
                    f"(FORMAT csv, DELIMITER {delimiter})"
                ) as copy:
                    copy.write(records())
                if cur.rowcount != expected:
                    raise _RecordsMismatch
        except (_RecordsMismatch, psycopg.errors.DataError, psycopg.errors.IntegrityError):
            return False
        return True

    def _stage_values(self, cur: Any, values: pa.Table) -> None:
        """COPY the validated, typed values, written as CSV by pyarrow."""
        extra = _extra_columns(values)
        cur.execute(
            f"CREATE TEMP TABLE {STAGE} ON COMMIT DROP AS SELECT {', '.join(self.columns)}, "
            + ", ".join(f"0::bigint AS {name}" for name in extra)
            + f" FROM {self.target} WITH NO DATA"
        )
        buffer = io.BytesIO()
        pa_csv.write_csv(values, buffer, pa_csv.WriteOptions(include_header=False))
        names = ", ".join([*self.columns, *extra])
        with cur.copy(f"COPY {STAGE} ({names}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(buffer.getbuffer())

    def await_turn(self, cur: Any, previous: int) -> None:
        # Wait for the previous chunk's transaction lock to be free, and hold nothing.
        cur.execute(
            "SELECT pg_advisory_lock(hashtext(%(id)s), %(chunk)s), "
            "pg_advisory_unlock(hashtext(%(id)s), %(chunk)s)",
            {"id": self.job.import_id, "chunk": previous},
        )

    def apply(self, cur: Any, low: int, high: int) -> tuple[int, int]:
        """Anti-join INSERT (and UPDATE ... FROM): much cheaper than ON CONFLICT's speculative
        insertion, and exact because earlier chunks have committed. A concurrent writer
        outside this import can still add a key in between: then the unique index refuses,
        and the ON CONFLICT statements of the generic path take over.
        """
        mode = self.job.options.on_conflict
        if mode == "error":
            return super().apply(cur, low, high)
        try:
            with self.savepoint(cur):
                updated = self._update_changed(cur, low, high) if mode == "update" else 0
                return self._insert_new(cur, low, high), updated
        except RowRefused:
            return super().apply(cur, low, high)

    def _insert_new(self, cur: Any, low: int, high: int) -> int:
        match = " AND ".join(f"t.{k} = s.{k}" for k in self.key)
        return self.rowcount(
            cur,
            f"INSERT INTO {self.target} ({', '.join(self.columns)}) "
            f"SELECT {', '.join(f's.{c}' for c in self.columns)} FROM {STAGE} s "
            f"WHERE s.{ORD} BETWEEN %s AND %s "
            f"AND NOT EXISTS (SELECT 1 FROM {self.target} t WHERE {match})",
            (low, high),
        )

    def _update_changed(self, cur: Any, low: int, high: int) -> int:
        if not self.non_key:
            return 0
        match = " AND ".join(f"t.{k} = s.{k}" for k in self.key)
        current = ", ".join(self._comparable(f"t.{c}", c) for c in self.non_key)
        incoming = ", ".join(self._comparable(f"s.{c}", c) for c in self.non_key)
        return self.rowcount(
            cur,
            f"UPDATE {self.target} AS t SET "
            + ", ".join(f"{c} = s.{c}" for c in self.non_key)
            + f" FROM {STAGE} s WHERE s.{ORD} BETWEEN %s AND %s AND {match} "
            f"AND ({current}) IS DISTINCT FROM ({incoming})",
            (low, high),
        )

    def upsert(self, cur: Any, insert: str, params: tuple[int, int]) -> tuple[int, int]:
        assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in self.non_key)
        current = ", ".join(self._comparable(f"t.{c}", c) for c in self.non_key)
        incoming = ", ".join(self._comparable(f"EXCLUDED.{c}", c) for c in self.non_key)
        aliased = insert.replace(f"INSERT INTO {self.target} ", f"INSERT INTO {self.target} AS t ")
        row = self.fetchone(
            cur,
            f"WITH written AS ({aliased} ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET "
            f"{assignments} WHERE ({current}) IS DISTINCT FROM ({incoming}) "
            "RETURNING (xmax = 0) AS inserted) "
            "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) "
            "FROM written",
            params,
        )
        return int(row[0]), int(row[1])

    def _comparable(self, expression: str, column: str) -> str:
        """Types without an equality operator (json, xml, ...) compare by their text."""
        kind, sql_type = self.kinds[column]
        if kind == Kind.JSON and sql_type.upper() == "JSON":
            return f"{expression}::jsonb"
        if kind == Kind.OTHER:
            return f"{expression}::text"
        return expression

    @contextmanager
    def savepoint(self, cur: Any) -> Iterator[None]:
        try:
            with cur.connection.transaction():
                yield
        except (
            psycopg.errors.IntegrityError,
            psycopg.errors.DataError,
            psycopg.errors.CardinalityViolation,
        ) as exc:
            raise RowRefused(str(exc)) from exc

    def insert_rejects(self, cur: Any, index: int, rejects: list[Reject]) -> None:
        if not rejects:
            return
        with cur.copy(
            "COPY batchflows_rejects (import_id, chunk_index, line, raw, errors) FROM STDIN"
        ) as copy:
            for reject in rejects:
                # PostgreSQL text cannot hold NUL; show it as \0 in the report.
                errors = json.dumps(reject.errors, ensure_ascii=False)
                copy.write_row(
                    (
                        self.job.import_id,
                        index,
                        reject.line,
                        reject.raw.replace("\x00", "\\0"),
                        errors.replace("\\u0000", "\\\\0"),
                    )
                )

    @contextmanager
    def translate_errors(self, chunk: ChunkSpec) -> Iterator[None]:
        try:
            yield
        except (
            psycopg.errors.DeadlockDetected,
            psycopg.errors.SerializationFailure,
            psycopg.errors.LockNotAvailable,
            psycopg.OperationalError,
        ) as exc:
            raise TargetError(
                f"chunk {chunk.index}: PostgreSQL: {_first_line(exc)} (transient, will retry)",
                transient=True,
            ) from exc
        except psycopg.Error as exc:
            raise TargetError(
                f"chunk {chunk.index}: PostgreSQL refused the chunk: {_first_line(exc)}",
                transient=False,
            ) from exc


class SqliteWriter(ChunkWriter):
    """The embedded default: stage with executemany, then INSERT ... ON CONFLICT."""

    placeholder = "?"
    stage = f"temp.{STAGE}"

    def transaction(self, conn: Any, staged: StagedChunk) -> ChunkCounts:
        cur = conn.cursor()
        # Wait outside any transaction: SQLite has one writer at a time, and an open read
        # transaction would keep a snapshot in which the previous chunk never commits.
        previous = self.wait_for_previous(cur, staged.chunk.index)
        extra = _extra_columns(staged.values)
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute(f"DROP TABLE IF EXISTS {self.stage}")
            cur.execute(
                f"CREATE TEMP TABLE {STAGE} AS SELECT {', '.join(self.columns)}, "
                + ", ".join(f"0 AS {name}" for name in extra)
                + f" FROM {self.target} WHERE 0"
            )
            marks = ", ".join("?" for _ in staged.values.column_names)
            cur.executemany(f"INSERT INTO {self.stage} VALUES ({marks})", _rows(staged.values))
            self.prepare(cur, staged)
            counts = self.apply_in_transaction(cur, staged, previous)
            cur.execute(f"DROP TABLE {self.stage}")
            cur.execute("COMMIT")
            return counts
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def upsert(self, cur: Any, insert: str, params: tuple[int, int]) -> tuple[int, int]:
        join = " AND ".join(f"s.{k} = t.{k}" for k in self.key)
        staged, existing = self.fetchone(
            cur,
            f"SELECT count(*), count(t.{self.key[0]}) FROM {self.stage} s "
            f"LEFT JOIN {self.target} t ON {join} WHERE s.{ORD} BETWEEN {{p}} AND {{p}}",
            params,
        )
        assignments = ", ".join(f"{c} = excluded.{c}" for c in self.non_key)
        changed = " OR ".join(f"{self.target}.{c} IS NOT excluded.{c}" for c in self.non_key)
        written = self.rowcount(
            cur,
            f"{insert} ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {assignments} "
            f"WHERE {changed}",
            params,
        )
        inserted = int(staged) - int(existing)
        return inserted, written - inserted

    @contextmanager
    def savepoint(self, cur: Any) -> Iterator[None]:
        cur.execute("SAVEPOINT batchflows_rows")
        try:
            yield
        except BaseException as exc:
            cur.execute("ROLLBACK TO batchflows_rows")
            cur.execute("RELEASE batchflows_rows")
            if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
                raise RowRefused(str(exc)) from exc
            raise
        cur.execute("RELEASE batchflows_rows")

    def insert_rejects(self, cur: Any, index: int, rejects: list[Reject]) -> None:
        cur.executemany(
            "INSERT INTO batchflows_rejects (import_id, chunk_index, line, raw, errors) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (
                    self.job.import_id,
                    index,
                    r.line,
                    r.raw,
                    json.dumps(r.errors, ensure_ascii=False),
                )
                for r in rejects
            ],
        )

    @contextmanager
    def translate_errors(self, chunk: ChunkSpec) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            transient = "locked" in str(exc) or "busy" in str(exc)
            raise TargetError(f"chunk {chunk.index}: SQLite: {exc}", transient=transient) from exc
        except sqlite3.Error as exc:
            raise TargetError(
                f"chunk {chunk.index}: SQLite refused the chunk: {exc}", transient=False
            ) from exc


def _extra_columns(values: pa.Table) -> list[str]:
    """The bookkeeping columns staged after the table's own (line, key hash)."""
    return [name for name in values.column_names if name in (ORD, KEY_HI, KEY_LO)]


def _rows(values: pa.Table) -> list[tuple[Any, ...]]:
    """Rows as sqlite3 parameters: timestamps and dates as ISO text, booleans as 0/1."""
    columns = []
    for column in values.columns:
        kind = column.type
        converted = column
        if pa.types.is_timestamp(kind):
            converted = pc.strftime(column, format="%Y-%m-%d %H:%M:%S")
        elif pa.types.is_date(kind):
            converted = pc.cast(column, pa.string())
        elif pa.types.is_boolean(kind):
            converted = pc.cast(column, pa.int8())
        columns.append(converted.to_pylist())
    return list(zip(*columns, strict=True))


def _literal(text: str) -> str:
    """A one-character SQL string literal (the CSV delimiter, checked at planning)."""
    return "'" + text.replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
