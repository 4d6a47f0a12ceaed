"""Read and close an import's bookkeeping: totals from the chunk ledger, status, first rejects."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from tasks.db.bookkeeping import chunks, claims, imports, rejects


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
    """Record why an import stopped; chunks waiting for their turn see it and stop too."""
    with engine.begin() as conn:
        _set(conn, import_id, status="failed", error=error[:4000])


def _set(conn: sa.Connection, import_id: str, **values: Any) -> None:
    conn.execute(
        imports.update()
        .where(imports.c.import_id == import_id)
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
