"""Import one chunk: read its byte range, parse, validate, de-duplicate, write in one transaction.

A plain function, so tests run it without Prefect; the `@task` in tasks/import_tasks.py only
adds retries and a name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from tasks.bookkeeping import chunks
from tasks.chunk_writer import LINE, PHASE, ChunkCounts, StagedChunk, write_chunk
from tasks.csv_parse import ParsedChunk, Reject, parse_chunk, read_range
from tasks.csv_plan import ChunkSpec
from tasks.database import get_engine
from tasks.dedup import dedup
from tasks.errors import ConflictError, InputError
from tasks.import_plan import ImportPlan
from tasks.validation import validate


def run_chunk(plan: ImportPlan, chunk: ChunkSpec) -> ChunkCounts:
    """Apply chunk `chunk` of `plan` exactly once and return its counts."""
    engine = get_engine(plan.database)
    committed = _committed(engine, plan.import_id, chunk.index)
    if committed is not None:
        return committed
    _check_unchanged(plan)
    staged = stage_chunk(plan, chunk, read_range(plan.path, chunk.start, chunk.end))
    return write_chunk(engine, plan, staged)


def stage_chunk(plan: ImportPlan, chunk: ChunkSpec, data: bytes) -> StagedChunk:
    """Everything before the database: rows to stage, rejects and in-chunk repeat counts."""
    parsed = parse_chunk(data, chunk, plan.header, plan.used, plan.options.dialect)
    strings = parsed.strings.rename_columns(plan.columns)
    validated = validate(strings, plan.table, plan.options.rules, plan.required)
    rejects = parsed.rejects + [
        Reject(line=int(parsed.lines[row]), raw=parsed.raw(row), errors=errors)
        for row, errors in validated.errors.items()
    ]
    valid_rows = np.flatnonzero(validated.valid)
    values = validated.values.take(pa.array(valid_rows))
    lines = parsed.lines[valid_rows]
    plan_dedup = dedup(values, plan.options.key, plan.options.on_conflict)
    if plan_dedup.repeated is not None:
        first, again = plan_dedup.repeated
        raise ConflictError(
            f"{plan.source} line {lines[again]}: key repeats line {lines[first]} of the file; "
            "on_conflict='error' stops the import here (chunks before this one stay committed)"
        )
    take = np.concatenate([plan_dedup.first, plan_dedup.last])
    phases = np.concatenate(
        [np.ones(len(plan_dedup.first), np.int8), np.full(len(plan_dedup.last), 2, np.int8)]
    )
    staged = values.take(pa.array(take)).append_column(LINE, pa.array(lines[take], pa.int64()))
    staged = staged.append_column(PHASE, pa.array(phases, pa.int8()))
    return StagedChunk(
        chunk=chunk,
        rows=parsed.rows,
        values=staged,
        rejects=sorted(rejects, key=lambda r: r.line),
        repeats_skipped=plan_dedup.skipped,
        repeats_updated=plan_dedup.updated,
        raw_of_line=_raw_lookup(parsed),
    )


def _raw_lookup(parsed: ParsedChunk) -> Callable[[int], str]:
    """Raw text by physical line, for rows the database refuses (lines are sorted)."""

    def raw(line: int) -> str:
        return parsed.raw(int(np.searchsorted(parsed.lines, line)))

    return raw


def _committed(engine: sa.Engine, import_id: str, index: int) -> ChunkCounts | None:
    """The chunk's ledger row, if an earlier attempt already committed it."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                chunks.c.rows,
                chunks.c.inserted,
                chunks.c.updated,
                chunks.c.skipped,
                chunks.c.failed,
                chunks.c.cum_rows,
                chunks.c.cum_failed,
            ).where(chunks.c.import_id == import_id, chunks.c.chunk_index == index)
        ).one_or_none()
    if row is None:
        return None
    return ChunkCounts(index=index, already_committed=True, **row._mapping)


def _check_unchanged(plan: ImportPlan) -> None:
    """Refuse to read a file that changed since it was planned: its ranges would be wrong."""
    stat = Path(plan.path).stat()
    if (stat.st_size, stat.st_mtime_ns) != (plan.size, plan.mtime_ns):
        raise InputError(
            f"{plan.path} changed while it was being imported (size or modification time); "
            f"import {plan.import_id!r} stops: rerun it once the file is complete"
        )
