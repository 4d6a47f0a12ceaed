"""The import ledger: every statement on `batchflows_imports` and `batchflows_chunks`.

An import's row is registered (or resumed) by the plan and closed by `finish-import`; each
chunk claims, fills and reads its ledger row inside its own transaction, through the
`Statement`s below that the chunk writer runs on its DB-API cursor. The ledger, not Prefect's
cache, is the record of what is done.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from tasks.db.bookkeeping import chunks, claims, imports, rejects
from tasks.imports.csv_plan import ChunkSpec

# SQL with `{p}` for the driver's placeholder, and its parameters.
Statement = tuple[str, tuple[Any, ...]]

COUNTS = ("rows", "inserted", "updated", "skipped", "failed", "cum_rows", "cum_failed")


class ChunkCounts(BaseModel):
    """What one chunk did, and the import's running totals through it: its ledger row."""

    index: int
    rows: int
    inserted: int
    updated: int
    skipped: int
    failed: int
    cum_rows: int
    cum_failed: int
    already_committed: bool = False
    # Rows the database itself refused (isolated by bisection): automatic sizing shrinks on them.
    refused: int = 0
    # The process that ran the chunk, so a test can see where a task runner put the work.
    pid: int = Field(default_factory=os.getpid)


class ImportTotals(BaseModel):
    """Sums over every committed chunk of an import, whichever run committed it."""

    total: int
    inserted: int
    updated: int
    skipped: int
    failed: int
    chunks: int


def ledger_totals(engine: Engine, import_id: str) -> ImportTotals:
    """The import's counts as the ledger holds them: the single source of truth."""
    columns = [
        chunks.c.rows,
        chunks.c.inserted,
        chunks.c.updated,
        chunks.c.skipped,
        chunks.c.failed,
    ]
    query = sa.select(
        *(sa.func.coalesce(sa.func.sum(c), 0) for c in columns), sa.func.count()
    ).where(chunks.c.import_id == import_id)
    with engine.connect() as conn:
        row = conn.execute(query).one()
    names = ("total", "inserted", "updated", "skipped", "failed", "chunks")
    return ImportTotals(**{name: int(value) for name, value in zip(names, row, strict=True)})


def register_import(
    engine: Engine, row: dict[str, Any], check_existing: Callable[[sa.RowMapping], None]
) -> list[tuple[int, int, int]]:
    """Record a new import's row, or resume an existing one; the chunks its ledger holds,
    as (chunk index, start byte, end byte).

    An existing row is locked, checked by `check_existing` (which raises if it may not be
    resumed) and set running again, in one transaction.
    """
    import_id = row["import_id"]
    try:
        with engine.begin() as conn:
            conn.execute(imports.insert().values(**row))
        return []
    except IntegrityError:
        pass
    with engine.begin() as conn:
        # Locked, so a concurrent cleanup purging this (finished) import's ledger either
        # completes first, and the resume sees the chunks gone, or waits for the resume.
        existing = conn.execute(
            sa.select(imports).where(imports.c.import_id == import_id).with_for_update()
        ).one()
        check_existing(existing._mapping)
        done = [
            (row.chunk_index, row.start_byte, row.end_byte)
            for row in conn.execute(
                sa.select(chunks.c.chunk_index, chunks.c.start_byte, chunks.c.end_byte).where(
                    chunks.c.import_id == import_id
                )
            )
        ]
        conn.execute(
            imports.update()
            .where(imports.c.import_id == import_id)
            .values(status="running", error=None, flow_run_id=row["flow_run_id"], finished_at=None)
        )
    return done


def claim_chunk(import_id: str, chunk: ChunkSpec) -> Statement:
    """Insert the chunk's ledger row with zero counts; returns a row unless one exists."""
    return (
        "INSERT INTO batchflows_chunks (import_id, chunk_index, start_byte, end_byte, "
        "first_line, rows, inserted, updated, skipped, failed, cum_rows, cum_failed) "
        "VALUES ({p}, {p}, {p}, {p}, {p}, 0, 0, 0, 0, 0, 0, 0) "
        "ON CONFLICT DO NOTHING RETURNING 1",
        (import_id, chunk.index, chunk.start, chunk.end, chunk.first_line),
    )


def record_chunk(import_id: str, counts: ChunkCounts) -> Statement:
    """Fill the claimed ledger row with the chunk's counts and running totals."""
    return (
        f"UPDATE batchflows_chunks SET {', '.join(f'{name} = {{p}}' for name in COUNTS)} "
        "WHERE import_id = {p} AND chunk_index = {p}",
        (*(getattr(counts, name) for name in COUNTS), import_id, counts.index),
    )


def chunk_turn(import_id: str, previous: int) -> Statement:
    """The import's status, and chunk `previous`'s running totals once it has committed."""
    return (
        "SELECT i.status, c.cum_rows, c.cum_failed, c.start_byte, c.end_byte "
        "FROM batchflows_imports i "
        "LEFT JOIN batchflows_chunks c ON c.import_id = i.import_id "
        "AND c.chunk_index = {p} WHERE i.import_id = {p}",
        (previous, import_id),
    )


def last_committed_before(import_id: str, index: int) -> Statement:
    """The highest chunk index below `index` that has committed, or -1 (chunks commit in
    order, and a chunk's ledger row becomes visible when it commits)."""
    return (
        "SELECT coalesce(max(chunk_index), -1) FROM batchflows_chunks "
        "WHERE import_id = {p} AND chunk_index < {p}",
        (import_id, index),
    )


def committed_chunk(import_id: str, index: int) -> Statement:
    """The counts another run committed for chunk `index`, then its byte range; read with
    `committed_counts`."""
    return (
        f"SELECT {', '.join(COUNTS)}, start_byte, end_byte FROM batchflows_chunks "
        "WHERE import_id = {p} AND chunk_index = {p}",
        (import_id, index),
    )


def committed_counts(index: int, row: tuple[Any, ...]) -> ChunkCounts:
    """A `committed_chunk` row as the chunk's counts."""
    counts = dict(zip(COUNTS, row[: len(COUNTS)], strict=True))
    return ChunkCounts(index=index, already_committed=True, **counts)


def mark_finished(engine: Engine, import_id: str, totals: ImportTotals) -> None:
    """Record a completed import and its final counts; its key claims are no longer needed."""
    with engine.begin() as conn:
        _set(
            conn,
            import_id,
            status="succeeded",
            error=None,
            inserted=totals.inserted,
            updated=totals.updated,
            skipped=totals.skipped,
            failed=totals.failed,
            chunk_count=totals.chunks,
        )
        conn.execute(claims.delete().where(claims.c.import_id == import_id))


def mark_failed(engine: Engine, import_id: str, error: str) -> None:
    """Record why a running import stopped; chunks waiting for their turn see it and stop too.

    Only a `running` import changes: the first reason recorded stands, and a finished import
    stays as it finished, so every handler on the way out may call this.
    """
    with engine.begin() as conn:
        running = imports.c.status == "running"
        _set(conn, import_id, running, status="failed", error=error[:4000])


def _set(
    conn: sa.Connection, import_id: str, *only_if: sa.ColumnElement[bool], **values: Any
) -> None:
    conn.execute(
        imports.update()
        .where(imports.c.import_id == import_id, *only_if)
        .values(finished_at=sa.func.current_timestamp(), **values)
    )


def first_rejects(engine: Engine, import_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The import's first rejected rows in file order: line, reasons, raw text."""
    query = (
        sa.select(rejects.c.line, rejects.c.errors, rejects.c.raw)
        .where(rejects.c.import_id == import_id)
        .order_by(rejects.c.line)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
