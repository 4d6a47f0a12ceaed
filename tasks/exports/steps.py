"""The export's steps as Prefect tasks (thin wrappers), and the snapshot the parts share.

Parts run concurrently in the flow's task runner; a part that fails on a transient database
error is retried (its file is simply rewritten) while the flow's snapshot stays open.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.db.engine import get_engine
from tasks.db.errors import database_errors
from tasks.errors import InputError
from tasks.exports.files import (
    Published,
    TempFiles,
    check_filename,
    default_filename,
    exports_root,
    record_export,
    resolve_destination,
)
from tasks.exports.part import ExportJob, PartResult, finish, write_part
from tasks.exports.read import exported_snapshot
from tasks.exports.source import Compression, Format, KeyRange, check_source, key_ranges
from tasks.common.retry import transient_retries


def make_job(
    *,
    table: str | None,
    query: str | None,
    columns: list[str] | None,
    where: str | None,
    format: Format,
    compression: Compression,
    destination: str,
    filename: str | None,
    chunk_size: int,
    max_concurrency: int,
    database: str | None,
    now: datetime,
) -> ExportJob:
    """Check every parameter against the database and the exports root; nothing is written."""
    if chunk_size < 1:
        raise InputError(f"parameter 'chunk_size': {chunk_size} must be at least 1")
    if max_concurrency < 1:
        raise InputError(f"parameter 'max_concurrency': {max_concurrency} must be at least 1")
    directory = resolve_destination(destination, exports_root())
    if filename is not None:
        check_filename(filename)
    with database_errors("checking the export's source"):
        source = check_source(
            get_engine(database), table=table, query=query, columns=columns, where=where
        )
    name = filename or default_filename(source.name, format, compression, now)
    files = TempFiles.new(directory, name)
    return ExportJob(
        database=database,
        source=source,
        format=format,
        compression=compression,
        snapshot=None,
        directory=str(directory),
        filename=name,
        token=files.token,
    )


plan_export = task(name="plan-export", cache_policy=NO_CACHE, **transient_retries(3))(make_job)


@contextmanager
def shared_snapshot(job: ExportJob, chunk_size: int) -> Iterator[tuple[ExportJob, list[KeyRange]]]:
    """The job bound to one snapshot, and its parts; the snapshot lives as long as the block.

    On PostgreSQL the key ranges are computed inside the snapshot too; elsewhere (SQLite) the
    one part reads in its own transaction, which is a snapshot of its own.
    """
    engine = get_engine(job.database)
    if job.source.backend != "postgresql":
        yield job, [KeyRange(index=0)]
        return
    with exported_snapshot(engine) as (snapshot, conn):
        ranges, _ = key_ranges(conn, job.source, chunk_size)
        yield job.model_copy(update={"snapshot": snapshot}), ranges


@task(
    name="export-part",
    task_run_name="export-part-{part.index}",
    cache_policy=NO_CACHE,
    **transient_retries(3),
)
def export_part(job: ExportJob, part: KeyRange) -> PartResult:
    """Write one part to its temporary file."""
    return write_part(job, part)


# Not retried: publishing consumes the parts' temporary files, so a second attempt would have
# nothing to join; a failed export is run again as a whole.
@task(name="finish-export", cache_policy=NO_CACHE, retries=0)
def finish_export(
    job: ExportJob,
    parts: list[PartResult],
    explicit_name: bool,
    expires_at: datetime,
    flow_run_id: str | None,
) -> Published:
    """Join the parts, publish the file under its final name and record it."""
    published = finish(job, parts, explicit_name)
    try:
        with database_errors(f"recording export {published.path}"):
            record_export(
                get_engine(job.database),
                published=published,
                format=job.format,
                compression=job.compression,
                source=f"{job.source.label}: {job.source.sql()}",
                rows=sum(part.rows for part in parts),
                expires_at=expires_at,
                flow_run_id=flow_run_id,
            )
    except BaseException:
        Path(published.path).unlink(missing_ok=True)
        raise
    get_run_logger().info("exported %s rows to %s", sum(p.rows for p in parts), published.path)
    return published
