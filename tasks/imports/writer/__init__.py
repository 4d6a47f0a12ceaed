"""Apply one chunk in one transaction: its rows, its rejects and its ledger row, or nothing.

`base` holds the algorithm (order, ledger claim, bisection of refused rows); `postgres` and
`sqlite` hold each database's statements.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from tasks.db.engine import backend_of
from tasks.imports.ledger import ChunkCounts
from tasks.imports.plan import ImportJob
from tasks.imports.writer.base import ChunkWriter, ImportStopped, StagedChunk
from tasks.imports.writer.postgres import PostgresWriter
from tasks.imports.writer.sqlite import SqliteWriter

__all__ = ["ChunkCounts", "ImportStopped", "StagedChunk", "write_chunk"]


def write_chunk(engine: Engine, job: ImportJob, staged: StagedChunk) -> ChunkCounts:
    """Apply `staged` to the target in one transaction (see the module docstring)."""
    writer: ChunkWriter
    if backend_of(engine) == "postgresql":
        writer = PostgresWriter(engine, job)
    else:
        writer = SqliteWriter(engine, job)
    return writer.write(staged)
