"""Export a table or a read-only query to a csv, ndjson, json or parquet file, consistently."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from tasks.common import RunProgress, results_in_order, schema_bounds
from tasks.common.deadline import (
    HOUR,
    MINUTE,
    RunTimeoutSeconds,
    TaskTimeoutSeconds,
    with_run_timeout,
)
from tasks.exports import (
    Compression,
    ExportJob,
    Format,
    PartResult,
    Published,
    export_part,
    finish_export,
    plan_export,
    shared_snapshot,
)

# Each part costs a task run and a database connection (with the snapshot imported), and
# memory does not depend on it: on 1M rows, 2 parts beat 10 (bench/bench_export.py).
PART_ROWS = 500_000


class ExportResult(BaseModel):
    """The published file: where, what, how much, its checksum and when cleanup removes it."""

    path: str
    format: str
    compression: str
    source: str
    rows: int
    bytes: int
    sha256: str
    expires_at: datetime
    parts: int
    seconds: float
    rows_per_second: float


@flow(name="export-table", log_prints=True)
@with_run_timeout
def export_table(
    *,
    table: str | None = None,
    query: str | None = None,
    columns: list[str] | None = None,
    where: str | None = None,
    format: Format = "csv",
    compression: Compression = "gzip",
    destination: str = "exports",
    filename: str | None = None,
    expires_in_hours: Annotated[int, Field(ge=0)] = 24,
    chunk_size: Annotated[int, schema_bounds(exclusiveMinimum=0)] = PART_ROWS,
    max_concurrency: Annotated[int, Field(gt=0)] = 2,
    database: str | None = None,
    timeout_seconds: RunTimeoutSeconds = 2 * HOUR,
    part_timeout_seconds: TaskTimeoutSeconds = 30 * MINUTE,
) -> ExportResult:
    """Export a table or a read-only query to one file, from one consistent snapshot.

    Args:
        table: Table to export, optionally schema.table (give this or query).
        query: A single read-only SELECT (or WITH ... SELECT) to export instead of a table.
        columns: Columns of the table to export, in this order; default all.
        where: A condition on the table's rows, e.g. "created_at >= '2024-01-01'".
        format: csv (header, RFC 4180, NULL as an empty unquoted field), ndjson (one
            object per line), json (one array) or parquet.
        compression: gzip adds .gz (csv, ndjson, json); parquet always compresses
            inside (snappy) unless none.
        destination: Directory under the exports root ($BATCHFLOWS_EXPORTS_ROOT, default
            ./data) where the file goes; it may not lead outside that root.
        filename: File name; default <table or "query">_<UTC timestamp>.<format>[.gz].
            An existing file is never overwritten.
        expires_in_hours: Hours until the cleanup flow deletes the file.
        chunk_size: Rows per part; a PostgreSQL table with an integer key is exported in
            parts of about this many rows, concurrently. Memory does not depend on it;
            each part costs a task run and a connection.
        max_concurrency: Parts read and written at once.
        database: SQLAlchemy URL, or the name of a saved SqlAlchemyConnector block;
            default $BATCHFLOWS_DATABASE_URL, then sqlite:///data/batchflows.db.
        timeout_seconds: Time limit of the whole run (default 2 hours): past it the run
            ends Failed (TimedOut) and no file, final or temporary, is left behind.
        part_timeout_seconds: Time limit of one part (default 30 minutes).
    """
    started = time.monotonic()
    now = datetime.now(UTC)
    job = plan_export(
        table=table,
        query=query,
        columns=columns,
        where=where,
        format=format,
        compression=compression,
        destination=destination,
        filename=filename,
        chunk_size=chunk_size,
        max_concurrency=max_concurrency,
        database=database,
        now=now,
    )
    with RunProgress(f"Exporting {job.source.label}", f"export to {job.filename}") as progress:
        parts = _export_parts(job, chunk_size, max_concurrency, part_timeout_seconds, progress)
        expires_at = now + timedelta(hours=expires_in_hours)
        published = finish_export(job, parts, filename is not None, expires_at, flow_run.get_id())
        seconds = time.monotonic() - started
        rows = sum(part.rows for part in parts)
        result = ExportResult(
            path=published.path,
            format=format,
            compression=job.compression,
            source=job.source.label,
            rows=rows,
            bytes=published.bytes,
            sha256=published.sha256,
            expires_at=expires_at,
            parts=len(parts),
            seconds=round(seconds, 3),
            rows_per_second=round(rows / seconds, 1) if seconds else 0.0,
        )
        _summarize(progress, job, result, published)
    return result


def _export_parts(
    job: ExportJob,
    chunk_size: int,
    max_concurrency: int,
    part_timeout_seconds: float,
    progress: RunProgress,
) -> list[PartResult]:
    """Every part written to its temporary file, in order; on failure none is left behind."""
    done: list[PartResult] = []
    try:
        with shared_snapshot(job, chunk_size) as (bound, ranges):
            parameters = ({"job": bound, "part": part} for part in ranges)
            for result in results_in_order(
                export_part, parameters, max_concurrency, timeout_seconds=part_timeout_seconds
            ):
                done.append(result)
                progress.update(
                    100.0 * len(done) / len(ranges), parts_status(job.format, done, len(ranges))
                )
    except BaseException:
        job.files.remove_all()
        raise
    return done


def parts_status(file_format: Format, done: list[PartResult], parts: int) -> dict[str, int]:
    """The live status row: parts, rows and bytes written so far. A parquet part is an Arrow
    IPC stream, encoded into the file only when it is published, so its bytes are named so."""
    written = "Arrow IPC bytes" if file_format == "parquet" else "bytes"
    return {
        "parts done": len(done),
        "parts": parts,
        "rows": sum(p.rows for p in done),
        written: sum(p.bytes for p in done),
    }


def _summarize(
    progress: RunProgress, job: ExportJob, result: ExportResult, published: Published
) -> None:
    summary = {
        "path": published.path,
        "rows": result.rows,
        "bytes": result.bytes,
        "sha256": result.sha256,
        "expires_at": result.expires_at.isoformat(),
    }
    status = {"parts done": result.parts, "parts": result.parts, "rows": result.rows}
    progress.update(100.0, status, force=True, summary=summary)
    progress.table(f"export-{job.source.name}-summary", [summary], f"export {job.filename}")
