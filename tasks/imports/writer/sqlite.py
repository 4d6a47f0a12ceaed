"""SQLite statements of the chunk apply: executemany into a temporary stage, then apply."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tasks.imports.csv_parse import Reject
from tasks.imports.ledger import ChunkCounts
from tasks.imports.writer.base import (
    ORD,
    STAGE,
    ChunkWriter,
    RowRefused,
    StagedChunk,
    extra_columns,
)


class SqliteWriter(ChunkWriter):
    """The embedded default: stage with executemany, then INSERT ... ON CONFLICT."""

    placeholder = "?"
    stage = f"temp.{STAGE}"

    def transaction(self, conn: Any, staged: StagedChunk) -> ChunkCounts:
        cur = conn.cursor()
        # Wait outside any transaction: SQLite has one writer at a time, and an open read
        # transaction would keep a snapshot in which the previous chunk never commits.
        previous = self.wait_for_previous(cur, staged.chunk.index)
        extra = extra_columns(staged.values)
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
