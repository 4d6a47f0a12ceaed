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

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy.engine import Engine

from tasks.db.engine import raw_connection
from tasks.db.errors import database_errors, first_line
from tasks.db.schema import qualified, quote
from tasks.errors import ConflictError, ErrorRateExceeded, InputError
from tasks.imports import ledger
from tasks.imports.arrays import IntArray
from tasks.imports.csv_parse import Reject
from tasks.imports.csv_plan import ChunkSpec
from tasks.imports.ledger import ChunkCounts
from tasks.imports.plan import ImportJob

ORD = "batchflows_ord"
KEY_HI = "batchflows_key_hi"
KEY_LO = "batchflows_key_lo"
STAGE = "batchflows_stage"
WAIT_FIRST_SECONDS = 0.002
WAIT_MAX_SECONDS = 0.05


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
        self.chunk: ChunkSpec | None = None

    def write(self, staged: StagedChunk) -> ChunkCounts:
        self.lines = staged.lines
        self.chunk = staged.chunk
        with database_errors(f"chunk {staged.chunk.index}"), raw_connection(self.engine) as conn:
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
            refused=len(self.refused),
        )
        if counts.inserted + counts.updated + counts.skipped + counts.failed != counts.rows:
            raise AssertionError(f"chunk {chunk.index}: counts do not add up: {counts}")
        self.check_error_rate(counts)
        self.insert_rejects(cur, chunk.index, list(self.refused.values()))
        self.execute(cur, *ledger.record_chunk(self.job.import_id, counts))
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
                    errors={"_database": first_line(exc.__cause__ or exc)},
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
            row = self.fetchone(cur, *ledger.chunk_turn(self.job.import_id, previous))
            if row is None or row[0] != "running":
                status = "missing" if row is None else row[0]
                raise ImportStopped(
                    f"import {self.job.import_id!r} is {status}: chunk {index} stops waiting "
                    f"for chunk {previous}"
                )
            if row[1] is not None:
                self.check_adjacent(index, previous, int(row[3]), int(row[4]))
                return int(row[1]), int(row[2])
            time.sleep(delay)
            delay = min(delay * 1.5, WAIT_MAX_SECONDS)

    def check_adjacent(self, index: int, previous: int, start: int, end: int) -> None:
        """Chunk `index` must start where `previous` ended (in update mode: end where it
        started), or two runs that cut the file differently would overlap or leave a gap."""
        if self.chunk is None:
            return
        ours, theirs = (
            (self.chunk.end, start) if self.job.options.reverse else (self.chunk.start, end)
        )
        if ours != theirs:
            raise ImportStopped(
                f"import {self.job.import_id!r}: chunk {index} (bytes {self.chunk.start}-"
                f"{self.chunk.end}) does not follow committed chunk {previous} (bytes {start}-"
                f"{end}): another run of this import cut the file differently. Run it again "
                "once no other run of it is active; it resumes where the ledger ends"
            )

    def claim(self, cur: Any, chunk: ChunkSpec) -> bool:
        """Insert the chunk's ledger row; False if a committed run already holds it."""
        return self.fetchone(cur, *ledger.claim_chunk(self.job.import_id, chunk)) is not None

    def committed_counts(self, conn: Any, index: int) -> ChunkCounts:
        """The counts the run that committed chunk `index` recorded."""
        row = self.fetchone(conn.cursor(), *ledger.committed_chunk(self.job.import_id, index))
        if self.chunk is not None and (self.chunk.start, self.chunk.end) != tuple(row[-2:]):
            raise ImportStopped(
                f"import {self.job.import_id!r}: chunk {index} is committed with bytes "
                f"{row[-2]}-{row[-1]}, not {self.chunk.start}-{self.chunk.end}: another run "
                "of this import cut the file differently. Run it again once no other run of "
                "it is active; it resumes where the ledger ends"
            )
        return ledger.committed_counts(index, row)

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


def extra_columns(values: pa.Table) -> list[str]:
    """The bookkeeping columns staged after the table's own (line, key hash)."""
    return [name for name in values.column_names if name in (ORD, KEY_HI, KEY_LO)]
