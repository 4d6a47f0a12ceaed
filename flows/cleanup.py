"""Apply the retention policy: expired exports, old bookkeeping of finished work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks import cleanup as retention
from tasks.cleanup import Removed
from tasks.database import get_engine
from tasks.export_files import exports_root

ABANDONED_AFTER = timedelta(days=1)


class CleanupResult(Removed):
    """What one cleanup removed (or would remove, in a dry run), by kind."""

    dry_run: bool
    retention_days: int
    imports: int
    cutoff: datetime


@task(cache_policy=NO_CACHE)
def delete_expired_exports(database: str | None, now: datetime, dry_run: bool) -> Removed:
    """Expired export files and their rows."""
    return retention.delete_expired_exports(get_engine(database), now, dry_run=dry_run)


@task(cache_policy=NO_CACHE)
def delete_abandoned_temp_files(now: datetime, dry_run: bool) -> Removed:
    """Temporary files of exports killed mid-way, untouched for a day, under the exports root."""
    return retention.delete_abandoned_temp_files(
        exports_root(), now - ABANDONED_AFTER, dry_run=dry_run
    )


@task(cache_policy=NO_CACHE)
def purge_finished_imports(
    database: str | None, cutoff: datetime, dry_run: bool
) -> tuple[int, Removed]:
    """Rejects, chunk ledger and claims of imports finished before `cutoff`."""
    engine = get_engine(database)
    removed = Removed()
    finished = retention.purgeable_imports(engine, cutoff)
    for import_id in finished:
        removed += retention.purge_import(engine, import_id, cutoff, dry_run=dry_run)
    return len(finished), removed


@task(cache_policy=NO_CACHE)
def delete_replayed_dead_letters(database: str | None, cutoff: datetime, dry_run: bool) -> Removed:
    """Dead letters replayed before `cutoff`."""
    return retention.delete_replayed_dead_letters(get_engine(database), cutoff, dry_run=dry_run)


@flow(name="cleanup", log_prints=True)
def cleanup(
    retention_days: int = 30,
    dry_run: bool = False,
    database: str | None = None,
) -> CleanupResult:
    """Delete expired exports, abandoned export temp files, and old bookkeeping of finished work.

    Running imports and pending dead letters are never touched; every batch is a short
    transaction, so it is safe to run while imports run.

    Args:
        retention_days: Keep rejects, chunk ledger and claims of finished imports, and
            replayed dead letters, this many days after they finished.
        dry_run: Only count what would be deleted.
        database: SQLAlchemy URL or SqlAlchemyConnector block name; default
            $BATCHFLOWS_DATABASE_URL, then sqlite:///data/batchflows.db.
    """
    now = datetime.now(UTC)
    cutoff = retention.cutoff_of(now, retention_days)
    exports = delete_expired_exports(database, now, dry_run)
    leftovers = delete_abandoned_temp_files(now, dry_run)
    imports, ledger = purge_finished_imports(database, cutoff, dry_run)
    letters = delete_replayed_dead_letters(database, cutoff, dry_run)
    removed = exports + leftovers + ledger + letters
    result = CleanupResult(
        **removed.model_dump(),
        dry_run=dry_run,
        retention_days=retention_days,
        imports=imports,
        cutoff=cutoff,
    )
    verb = "would delete" if dry_run else "deleted"
    create_table_artifact(
        table=[{"kind": kind, verb: count} for kind, count in removed.model_dump().items()],
        key="cleanup-summary",
        description=f"cleanup {verb}, retention {retention_days} days (before {cutoff:%Y-%m-%d})",
    )
    get_run_logger().info(
        "cleanup %s %s",
        verb,
        ", ".join(f"{count} {kind}" for kind, count in removed.model_dump().items()),
    )
    return result
