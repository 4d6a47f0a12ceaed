"""Prefect tasks of the import-csv flow: thin wrappers over plain functions, and the chunk window.

The ledger in the target database is the single source of truth for what is done, so tasks
use no Prefect result cache (`NO_CACHE`): a retried or resumed run asks the ledger, which also
works across machines, where a worker-local cache would not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.common.retry import transient_retries
from tasks.common.task_window import results_in_order
from tasks.db.engine import get_engine
from tasks.db.errors import database_errors
from tasks.imports.chunk import run_chunk
from tasks.imports.csv_plan import ChunkSpec
from tasks.imports.ledger import ImportTotals, ledger_totals, mark_failed, mark_finished
from tasks.imports.plan import ImportJob, ImportOptions, ImportPlan, make_plan
from tasks.imports.sizing import ChunkCutter
from tasks.imports.writer import ChunkCounts


@task(
    name="plan-import",
    cache_policy=NO_CACHE,
    **transient_retries(3),
)
def plan_import(
    *,
    source: str,
    options: ImportOptions,
    import_id: str,
    database: str | None,
    max_error_rate: float,
    flow_run_id: str | None,
) -> ImportPlan:
    """Check the file and table, register or resume the import, list the chunks to do."""
    with database_errors(f"planning import {import_id}"):
        plan = make_plan(
            source=source,
            options=options,
            import_id=import_id,
            database=database,
            max_error_rate=max_error_rate,
            flow_run_id=flow_run_id,
        )
    done = plan.start.committed
    get_run_logger().info(
        "import %s: %s rows, %s%s",
        import_id,
        f"{plan.total_rows:,}",
        f"chunks of {options.chunk_size:,} rows"
        if options.chunk_size
        else f"{plan.job.size / 1e6:,.1f} MB in chunks sized as it runs",
        f"; resuming, {done} chunks already committed" if done else "",
    )
    return plan


@task(
    name="import-chunk",
    task_run_name="{chunk.label}",
    cache_policy=NO_CACHE,
    **transient_retries(5),
)
def import_chunk(job: ImportJob, chunk: ChunkSpec) -> ChunkCounts:
    """Parse, validate and apply one chunk in one transaction, exactly once."""
    return run_chunk(job, chunk)


@task(name="finish-import", cache_policy=NO_CACHE, **transient_retries(3))
def finish_import(plan: ImportPlan) -> ImportTotals:
    """Sum the ledger and mark the import succeeded.

    Only a transient database error is retried; a ledger that does not add up to the file is
    a bug that a retry would only repeat.
    """
    engine = get_engine(plan.job.database)
    where = f"finishing import {plan.job.import_id}"
    with database_errors(where):
        totals = ledger_totals(engine, plan.job.import_id)
    if totals.total != plan.total_rows:
        raise AssertionError(
            f"import {plan.job.import_id}: the ledger counts {totals.total} rows but the file "
            f"has {plan.total_rows}"
        )
    with database_errors(where):
        mark_finished(engine, plan.job.import_id, totals)
    return totals


def chunk_cutter(plan: ImportPlan) -> ChunkCutter:
    """What cuts the import's remaining chunks, from where its ledger ends."""
    options = plan.job.options
    return ChunkCutter(
        plan.pieces, plan.start, reverse=options.reverse, automatic=options.chunk_size is None
    )


def run_in_order(
    plan: ImportPlan,
    cutter: ChunkCutter,
    window: int,
    chunk_timeout_seconds: float | None = None,
) -> Iterator[ChunkCounts]:
    """Run the chunks `cutter` cuts with at most `window` in flight; yield their counts in order.

    Chunks apply in the order they are cut, so waiting on the oldest one loses nothing; each
    result tells the cutter how the import goes before it cuts the next. On the first failure
    the import is marked failed, so chunks still waiting for their turn stop. Each chunk may
    take `chunk_timeout_seconds` at most after the one before it finished.
    """

    chunks = ({"job": plan.job, "chunk": chunk} for chunk in cutter)
    for counts in results_in_order(
        import_chunk,
        chunks,
        window,
        on_error=lambda exc: _record_failure(plan, exc),
        timeout_seconds=chunk_timeout_seconds,
    ):
        cutter.observe(counts.rows, counts.refused, already_committed=counts.already_committed)
        yield counts


@contextmanager
def failure_recorded(plan: ImportPlan) -> Iterator[None]:
    """Mark the import failed when the block raises, whatever raised and wherever.

    `run_in_order` records a chunk's failure before it waits for the chunks in flight; this
    catches the rest, above all a SIGTERM, which Prefect turns into a `TerminationSignal`
    raised at whatever line the flow is on (between chunks as well as while waiting for one).
    """
    try:
        yield
    except BaseException as exc:
        _record_failure(plan, exc)
        raise


def _record_failure(plan: ImportPlan, exc: BaseException) -> None:
    # A TerminationSignal (SIGTERM) has no message: name the exception instead.
    reason = str(exc) or f"stopped by {type(exc).__name__}"
    mark_failed(get_engine(plan.job.database), plan.job.import_id, reason)
