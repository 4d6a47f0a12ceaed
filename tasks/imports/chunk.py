"""Import one chunk: read its byte range, parse, validate, de-duplicate, write in one transaction.

A plain function, so tests run it without Prefect; the `@task` in steps.py only
adds retries and a name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from tasks.db.engine import get_engine
from tasks.errors import ConflictError, InputError
from tasks.imports.csv_parse import Reject, parse_chunk, read_range
from tasks.imports.csv_plan import ChunkSpec
from tasks.imports.dedup import dedup, key_hashes
from tasks.imports.plan import ImportJob
from tasks.imports.validation import validate
from tasks.imports.writer import ChunkCounts, StagedChunk, write_chunk
from tasks.imports.writer.base import KEY_HI, KEY_LO, ORD


def run_chunk(job: ImportJob, chunk: ChunkSpec) -> ChunkCounts:
    """Apply chunk `chunk` of `job` exactly once and return its counts."""
    engine = get_engine(job.database)
    _check_unchanged(job)
    staged = stage_chunk(job, chunk, read_range(job.path, chunk.start, chunk.end))
    return write_chunk(engine, job, staged)


def stage_chunk(job: ImportJob, chunk: ChunkSpec, data: bytes) -> StagedChunk:
    """Everything before the database: rows to stage, rejects and in-chunk repeats."""
    parsed = parse_chunk(data, chunk, job.header, job.used, job.options.dialect)
    strings = parsed.strings.rename_columns(job.columns)
    validated = validate(strings, job.table, job.options.rules, job.required)
    rejects = parsed.rejects + [
        Reject(line=int(parsed.lines[row]), raw=parsed.raw(row), errors=errors)
        for row, errors in validated.errors.items()
    ]
    valid_rows = np.flatnonzero(validated.valid)
    values = validated.values.take(pa.array(valid_rows))
    lines = parsed.lines[valid_rows]
    kept = dedup(values, job.options.key, job.options.on_conflict)
    if kept.repeated is not None:
        first, again = kept.repeated
        raise ConflictError(
            f"{job.source} line {lines[again]}: key repeats line {lines[first]} of the file; "
            "on_conflict='error' stops the import here (chunks before this one stay committed)"
        )
    staged = values.take(pa.array(kept.keep))
    staged = staged.append_column(ORD, pa.array(np.arange(len(kept.keep)), pa.int64()))
    if job.options.reverse:
        high, low = key_hashes(staged, job.options.key)
        staged = staged.append_column(KEY_HI, pa.array(high)).append_column(KEY_LO, pa.array(low))
    rows = valid_rows[kept.keep]
    return StagedChunk(
        chunk=chunk,
        rows=parsed.rows,
        values=staged,
        lines=parsed.lines[rows],
        rejects=sorted(rejects, key=lambda r: r.line),
        superseded=kept.superseded,
        raw_of=lambda ordinal: parsed.raw(int(rows[ordinal])),
        records=(lambda: parsed.records_bytes(rows)) if _records_as_is(job) else None,
    )


def _records_as_is(job: ImportJob) -> bool:
    """Whether the original bytes of valid rows can be staged as they are (PostgreSQL).

    Not in update mode (rows carry key hashes), not when header columns are ignored, and
    only for UTF-8 files, the server's encoding.
    """
    return not job.options.reverse and job.used == job.header and job.options.dialect.is_utf8


def _check_unchanged(job: ImportJob) -> None:
    """Refuse to read a file that changed since it was planned: its ranges would be wrong."""
    stat = Path(job.path).stat()
    if (stat.st_size, stat.st_mtime_ns) != (job.size, job.mtime_ns):
        raise InputError(
            f"{job.path} changed while it was being imported (size or modification time); "
            f"import {job.import_id!r} stops: rerun it once the file is complete"
        )
