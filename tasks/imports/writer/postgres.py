"""PostgreSQL statements of the chunk apply: COPY into a temporary stage, set-based apply."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
import psycopg.errors
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from sqlalchemy.engine import Engine

from tasks.db.schema import Kind
from tasks.imports import ledger
from tasks.imports.arrays import IntArray
from tasks.imports.csv_parse import Reject
from tasks.imports.ledger import ChunkCounts
from tasks.imports.plan import ImportJob
from tasks.imports.recent_keys import RECENT
from tasks.imports.writer.base import (
    ORD,
    STAGE,
    ChunkWriter,
    RowRefused,
    StagedChunk,
    _RecordsMismatch,
    extra_columns,
)


class PostgresWriter(ChunkWriter):
    """COPY into a temporary staging table, then set-based INSERT ... ON CONFLICT."""

    def __init__(self, engine: Engine, job: ImportJob) -> None:
        super().__init__(engine, job)
        # Whether the stage holds only keys the table lacked when the chunk probed ahead.
        self.probed = False

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
            recent = self._probe_ahead(cur, staged)
            previous = self.wait_for_previous(cur, staged.chunk.index)
            if recent is not None:
                self._unstage_existing(cur, recent)
            return self.apply_in_transaction(cur, staged, previous)

    def _probe_ahead(self, cur: Any, staged: StagedChunk) -> IntArray | None:
        """Skip mode, one key column: before the turn, unstage the rows whose key the table
        holds, so the turn inserts without probing every row (see recent_keys.py).

        Returns the ordinals whose key a chunk committing in between may add, to check at
        the turn; None when this process did not stage every such chunk (then the turn
        probes every row, as without this).
        """
        if self.job.options.on_conflict != "skip" or len(self.key) != 1:
            return None
        index = staged.chunk.index
        keys = staged.values.column(self.job.options.key[0]).combine_chunks()
        RECENT.add(self.job.import_id, index, keys)
        after = self.fetchone(cur, *ledger.last_committed_before(self.job.import_id, index))[0]
        recent = _ordinals_among(keys, RECENT.between(self.job.import_id, int(after), index))
        if recent is None:
            return None
        # The stage has no statistics: without this the planner may hash the whole table.
        cur.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
        cur.execute(f"DELETE FROM {STAGE} s WHERE EXISTS ({self._same_key_in_target()})")
        self.probed = True
        return recent

    def _unstage_existing(self, cur: Any, ordinals: IntArray) -> None:
        """At the turn: unstage the rows among `ordinals` whose key the table now holds."""
        if len(ordinals) == 0:
            return
        cur.execute(
            f"DELETE FROM {STAGE} s WHERE s.{ORD} = ANY(%s) "
            f"AND EXISTS ({self._same_key_in_target()})",
            (ordinals.tolist(),),
        )

    def _same_key_in_target(self) -> str:
        return f"SELECT 1 FROM {self.target} t WHERE {self._key_match()}"

    def _key_match(self) -> str:
        """The join of a staged row `s` to the table's row `t` with the same key."""
        return " AND ".join(f"t.{k} = s.{k}" for k in self.key)

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
        extra = extra_columns(values)
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
        # Wait for the previous chunk's transaction lock to be free, and hold nothing. Waiting
        # for our own import's previous chunk is expected, however long that chunk (itself
        # bounded by the session limits) takes: lift the session's lock and statement
        # timeouts for this one wait only.
        cur.execute(
            "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), "
            "set_config('lock_timeout', '0', true), set_config('statement_timeout', '0', true)"
        )
        lock_timeout, statement_timeout, _, _ = cur.fetchone()
        cur.execute(
            "SELECT pg_advisory_lock(hashtext(%(id)s), %(chunk)s), "
            "pg_advisory_unlock(hashtext(%(id)s), %(chunk)s)",
            {"id": self.job.import_id, "chunk": previous},
        )
        cur.execute(
            "SELECT set_config('lock_timeout', %s, true), "
            "set_config('statement_timeout', %s, true)",
            (lock_timeout, statement_timeout),
        )

    def apply(self, cur: Any, low: int, high: int) -> tuple[int, int]:
        """Anti-join INSERT (and UPDATE ... FROM): much cheaper than ON CONFLICT's speculative
        insertion, and exact because earlier chunks have committed; a plain INSERT where the
        chunk probed ahead. A concurrent writer outside this import can still add a key in
        between: then the unique index refuses, and the ON CONFLICT statements of the generic
        path take over.
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
        absent = "" if self.probed else f" AND NOT EXISTS ({self._same_key_in_target()})"
        return self.rowcount(
            cur,
            f"INSERT INTO {self.target} ({', '.join(self.columns)}) "
            f"SELECT {', '.join(f's.{c}' for c in self.columns)} FROM {STAGE} s "
            f"WHERE s.{ORD} BETWEEN %s AND %s{absent}",
            (low, high),
        )

    def _update_changed(self, cur: Any, low: int, high: int) -> int:
        if not self.non_key:
            return 0
        match = self._key_match()
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


def _ordinals_among(keys: pa.Array, recent: list[pa.Array] | None) -> IntArray | None:
    """Positions of `keys` found in `recent`; None if there is nothing to compare with (or
    the arrays do not compare: the turn then probes every row)."""
    if recent is None:
        return None
    if not recent:
        return np.zeros(0, dtype=np.int64)
    try:
        found = pc.is_in(keys, value_set=pa.concat_arrays(recent))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return np.flatnonzero(found.to_numpy(zero_copy_only=False))


def _literal(text: str) -> str:
    """A one-character SQL string literal (the CSV delimiter, checked at planning)."""
    return "'" + text.replace("'", "''") + "'"
