"""Apply the retention policy: expired exports, old bookkeeping of finished work."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import Field

from tasks.common.deadline import HOUR, RunTimeoutSeconds, with_run_timeout
from tasks.retention import (
    Removed,
    close_abandoned_imports,
    cutoff_of,
    expire_exports,
    purge_finished_imports,
    purge_replayed_dead_letters,
    remove_abandoned_temp_files,
)


class CleanupResult(Removed):
    """What one cleanup removed (or would remove, in a dry run), by kind."""

    dry_run: bool
    retention_days: int
    imports: int
    abandoned_imports: int
    cutoff: datetime


@flow(name="cleanup", log_prints=True)
@with_run_timeout
def cleanup(
    retention_days: Annotated[int, Field(ge=0)] = 30,
    dry_run: bool = False,
    database: str | None = None,
    timeout_seconds: RunTimeoutSeconds = 1 * HOUR,
) -> CleanupResult:
    """Delete expired exports, abandoned export temp files, and old bookkeeping of finished work.

    Running imports and pending dead letters are never touched; every batch is a short
    transaction, so it is safe to run while imports run. An import whose flow run ended
    without recording it (a killed worker) is first recorded as failed, still resumable.

    Args:
        retention_days: Keep rejects, chunk ledger and claims of finished imports, and
            replayed dead letters, this many days after they finished.
        dry_run: Only count what would be deleted.
        database: SQLAlchemy URL or SqlAlchemyConnector block name; default
            $BATCHFLOWS_DATABASE_URL, then sqlite:///data/batchflows.db.
        timeout_seconds: Time limit of the whole run (default 1 hour); every batch it
            deletes is its own transaction, so a stop leaves nothing half deleted.
    """
    now = datetime.now(UTC)
    cutoff = cutoff_of(now, retention_days)
    exports = expire_exports(database, now, dry_run)
    leftovers = remove_abandoned_temp_files(now, dry_run)
    abandoned = close_abandoned_imports(database, dry_run)
    imports, ledger = purge_finished_imports(database, cutoff, dry_run)
    letters = purge_replayed_dead_letters(database, cutoff, dry_run)
    removed = exports + leftovers + ledger + letters
    result = CleanupResult(
        **removed.model_dump(),
        dry_run=dry_run,
        retention_days=retention_days,
        imports=imports,
        abandoned_imports=abandoned,
        cutoff=cutoff,
    )
    verb = "would delete" if dry_run else "deleted"
    counts = removed.model_dump(exclude={"outside_exports_root"})
    left_alone = (
        f"; {removed.outside_exports_root} export rows point outside the exports root and "
        "were left alone"
        if removed.outside_exports_root
        else ""
    )
    create_table_artifact(
        table=[{"kind": kind, verb: count} for kind, count in counts.items()],
        key="cleanup-summary",
        description=f"cleanup {verb}, retention {retention_days} days "
        f"(before {cutoff:%Y-%m-%d}){left_alone}",
    )
    get_run_logger().info(
        "cleanup %s %s%s",
        verb,
        ", ".join(f"{count} {kind}" for kind, count in counts.items()),
        left_alone,
    )
    if abandoned:
        get_run_logger().warning(
            "%d import(s) still said running after their flow run ended: %s failed",
            abandoned,
            "would be recorded" if dry_run else "recorded",
        )
    return result
