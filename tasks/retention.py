"""Retention: remove expired exports and the bookkeeping of finished imports and replays.

Only what is past its time goes: export files whose `expires_at` has passed (and only inside
the exports root: a row pointing elsewhere is left alone and reported), temporary files
a killed export left behind a day ago or more, the rejects,
chunk ledger and key claims of imports that finished (succeeded or failed) more than
`retention_days` ago, and dead letters replayed that long ago. A running import's ledger is
what makes its resume exact, so it is never touched, and pending dead letters stay until they
are replayed. Every batch is its own short transaction, so imports keep committing meanwhile.

An import whose flow run ended without a word (its worker or machine was killed, and the
zombie automation marked the run Crashed) still says `running`; cleanup records it as failed,
with the run's final state, so reports tell the truth. It stays resumable with its import_id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import sqlalchemy as sa
from prefect import get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.exceptions import MissingContextError
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from tasks.common.retry import transient_retries
from tasks.db.bookkeeping import (
    chunks,
    claims,
    dead_letters,
    ensure_bookkeeping,
    exports,
    imports,
    rejects,
)
from tasks.db.engine import backend_of, get_engine
from tasks.db.errors import database_errors
from tasks.exports.files import abandoned_temp_files, exports_root

FINISHED = ("succeeded", "failed")
BATCH_SIZE = 5_000
ABANDONED_AFTER = timedelta(days=1)


class Removed(BaseModel):
    """Rows (and export files) removed, or that would be in a dry run, by kind."""

    export_files: int = 0
    outside_exports_root: int = 0
    temp_files: int = 0
    exports: int = 0
    rejects: int = 0
    chunks: int = 0
    claims: int = 0
    dead_letters: int = 0

    def __add__(self, other: Removed) -> Removed:
        return Removed(**{k: v + getattr(other, k) for k, v in self})


def cutoff_of(now: datetime, retention_days: int) -> datetime:
    """The instant before which finished bookkeeping is old enough to go (UTC)."""
    if retention_days < 0:
        raise ValueError(f"retention_days must be 0 or more, not {retention_days}")
    return now.astimezone(UTC) - timedelta(days=retention_days)


def inside_root(path: str, root: Path) -> bool:
    """Whether `path`, symlinks resolved, is a file under `root` (the exports root)."""
    resolved = Path(path).resolve()
    return resolved != root and resolved.is_relative_to(root)


def delete_expired_exports(
    engine: Engine,
    now: datetime,
    *,
    root: Path,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> Removed:
    """Delete the files of exports expired at `now`, then mark their rows deleted_at.

    A row whose path is not under `root` (`batchflows_exports` is a table anyone with write
    access can plant a row in) is neither deleted nor marked: it is counted in
    `outside_exports_root` on every run, and its path returned in `outside`.
    """
    ensure_bookkeeping(engine)
    now = now.astimezone(UTC)
    root = root.resolve()
    expired = sa.and_(exports.c.expires_at < now, exports.c.deleted_at.is_(None))
    removed = Removed()
    last_id = -1
    while True:
        with engine.connect() as conn:
            batch = conn.execute(
                sa.select(exports.c.id, exports.c.path)
                .where(expired, exports.c.id > last_id)
                .order_by(exports.c.id)
                .limit(batch_size)
            ).all()
        if not batch:
            return removed
        last_id = batch[-1].id
        inside = [row for row in batch if inside_root(row.path, root)]
        outside = [row.path for row in batch if not inside_root(row.path, root)]
        for path in outside:
            _warn(
                f"cleanup: export row path {path!r} is outside the exports root {root}; left alone"
            )
        files = sum(Path(row.path).is_file() for row in inside)
        if dry_run:
            removed += Removed(
                export_files=files, exports=len(inside), outside_exports_root=len(outside)
            )
            continue
        for row in inside:
            Path(row.path).unlink(missing_ok=True)
        with engine.begin() as conn:
            marked = conn.execute(
                exports.update()
                .where(exports.c.id.in_([row.id for row in inside]), exports.c.deleted_at.is_(None))
                .values(deleted_at=now)
            ).rowcount
        removed += Removed(export_files=files, exports=marked, outside_exports_root=len(outside))


def _warn(message: str) -> None:
    """A warning in the run's log when there is a run, else the module logger's."""
    try:
        get_run_logger().warning(message)
    except MissingContextError:
        logging.getLogger(__name__).warning(message)


def delete_abandoned_temp_files(root: Path, before: datetime, *, dry_run: bool = False) -> Removed:
    """Temporary files of exports killed mid-way, untouched since `before`."""
    abandoned = abandoned_temp_files(root, before)
    if not dry_run:
        for path in abandoned:
            path.unlink(missing_ok=True)
    return Removed(temp_files=len(abandoned))


def _finished_before(cutoff: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(imports.c.status.in_(FINISHED), imports.c.finished_at < cutoff)


def close_abandoned(
    engine: Engine, ended_runs: Callable[[list[str]], dict[str, str]], *, dry_run: bool = False
) -> int:
    """Mark failed the imports still `running` whose flow run has ended; how many.

    `ended_runs` maps flow run ids to the final state of those that ended (runs still going,
    or unknown to the Prefect server, are absent). A run that resumed the import meanwhile
    took the row over (its own flow run id), so the update leaves it alone.
    """
    ensure_bookkeeping(engine)
    running = sa.and_(imports.c.status == "running", imports.c.flow_run_id.is_not(None))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(imports.c.import_id, imports.c.flow_run_id).where(running))
        candidates = [(row.import_id, row.flow_run_id) for row in rows]
    ended = ended_runs(sorted({run for _, run in candidates})) if candidates else {}
    closed = 0
    for import_id, run in candidates:
        if run not in ended:
            continue
        if dry_run:
            closed += 1
            continue
        error = (
            f"flow run {run} ended {ended[run]} without recording it (its worker or machine "
            "was lost); run the import again with the same import_id to resume it"
        )
        with engine.begin() as conn:
            closed += conn.execute(
                imports.update()
                .where(imports.c.import_id == import_id, imports.c.flow_run_id == run, running)
                .values(
                    status="failed", error=error[:4000], finished_at=sa.func.current_timestamp()
                )
            ).rowcount
    return closed


def ended_flow_runs(run_ids: list[str]) -> dict[str, str]:
    """The final state ("Crashed: <message>") of each of `run_ids` that has ended."""
    ids = []
    for run_id in run_ids:
        try:
            ids.append(UUID(run_id))
        except ValueError:
            continue
    ended: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for start in range(0, len(ids), 200):
            batch = ids[start : start + 200]
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=batch)), limit=len(batch)
            )
            for run in runs:
                if run.state is not None and run.state.is_final():
                    message = f": {run.state.message}" if run.state.message else ""
                    ended[str(run.id)] = f"{run.state.name}{message}"
    return ended


def purgeable_imports(engine: Engine, cutoff: datetime) -> list[str]:
    """Imports finished before `cutoff` that still have rejects, ledger chunks or claims."""
    ensure_bookkeeping(engine)
    leftovers = sa.or_(
        *(
            sa.exists().where(table.c.import_id == imports.c.import_id)
            for table in (chunks, rejects, claims)
        )
    )
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(imports.c.import_id)
                .where(_finished_before(cutoff), leftovers)
                .order_by(imports.c.import_id)
            ).scalars()
        )


def purge_import(
    engine: Engine,
    import_id: str,
    cutoff: datetime,
    *,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
) -> Removed:
    """Delete one finished import's rejects, chunk ledger and claims, a batch per transaction.

    Each batch locks the import's row and checks again that it is finished and old enough, so
    an import resumed meanwhile (status back to running) keeps its ledger.
    """
    if dry_run:
        with engine.connect() as conn:
            if not conn.execute(_locked_if_finished(engine, import_id, cutoff)).first():
                return Removed()
            return Removed(**{name: _count(conn, table, import_id) for name, table in _owned()})
    removed = Removed()
    while True:
        with engine.begin() as conn:
            if not conn.execute(_locked_if_finished(engine, import_id, cutoff)).first():
                return removed
            batch = Removed(
                **{
                    name: _delete_batch(conn, table, import_id, batch_size)
                    for name, table in _owned()
                }
            )
        removed += batch
        if max(batch.rejects, batch.chunks, batch.claims) < batch_size:
            return removed


def _owned() -> list[tuple[str, sa.Table]]:
    return [("rejects", rejects), ("chunks", chunks), ("claims", claims)]


def _locked_if_finished(engine: Engine, import_id: str, cutoff: datetime) -> sa.Select[tuple[str]]:
    query = sa.select(imports.c.import_id).where(
        imports.c.import_id == import_id, _finished_before(cutoff)
    )
    # SQLite transactions here begin IMMEDIATE (one writer at a time): no row lock needed.
    return query.with_for_update() if backend_of(engine) == "postgresql" else query


def _count(conn: sa.Connection, table: sa.Table, import_id: str) -> int:
    query = sa.select(sa.func.count()).select_from(table).where(table.c.import_id == import_id)
    return int(conn.execute(query).scalar_one())


def _delete_batch(conn: sa.Connection, table: sa.Table, import_id: str, batch_size: int) -> int:
    """Delete up to about `batch_size` rows of `import_id` from `table`."""
    # Each table's own key column after import_id picks the batch (claims' 64-bit halves are
    # unique in practice, so a batch is at most a few rows larger than asked).
    column = {"batchflows_rejects": "id", "batchflows_chunks": "chunk_index"}.get(
        table.name, "key_hi"
    )
    picked = (
        sa.select(table.c[column])
        .where(table.c.import_id == import_id)
        .order_by(table.c[column])
        .limit(batch_size)
        .scalar_subquery()
    )
    return int(
        conn.execute(
            table.delete().where(table.c.import_id == import_id, table.c[column].in_(picked))
        ).rowcount
    )


def delete_replayed_dead_letters(
    engine: Engine, cutoff: datetime, *, dry_run: bool = False, batch_size: int = BATCH_SIZE
) -> Removed:
    """Delete dead letters replayed before `cutoff`; pending ones are never deleted."""
    ensure_bookkeeping(engine)
    old = sa.and_(dead_letters.c.replayed_at.is_not(None), dead_letters.c.replayed_at < cutoff)
    if dry_run:
        with engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(dead_letters).where(old)
            return Removed(dead_letters=int(conn.execute(query).scalar_one()))
    total = 0
    while True:
        picked = (
            sa.select(dead_letters.c.id)
            .where(old)
            .order_by(dead_letters.c.id)
            .limit(batch_size)
            .scalar_subquery()
        )
        with engine.begin() as conn:
            deleted = int(
                conn.execute(dead_letters.delete().where(dead_letters.c.id.in_(picked))).rowcount
            )
        total += deleted
        if deleted < batch_size:
            return Removed(dead_letters=total)


# Each batch deletes only what is still there, so a transient database error retries the
# whole step safely (the counts then cover the last attempt).
@task(name="expire-exports", cache_policy=NO_CACHE, **transient_retries(3))
def expire_exports(database: str | None, now: datetime, dry_run: bool) -> Removed:
    """Expired export files and their rows."""
    with database_errors("expiring exports"):
        return delete_expired_exports(
            get_engine(database), now, root=exports_root(), dry_run=dry_run
        )


@task(name="remove-abandoned-temp-files", cache_policy=NO_CACHE)
def remove_abandoned_temp_files(now: datetime, dry_run: bool) -> Removed:
    """Temporary files of exports killed mid-way, untouched for a day, under the exports root."""
    return delete_abandoned_temp_files(exports_root(), now - ABANDONED_AFTER, dry_run=dry_run)


@task(name="close-abandoned-imports", cache_policy=NO_CACHE, **transient_retries(3))
def close_abandoned_imports(database: str | None, dry_run: bool) -> int:
    """Imports left `running` by a flow run that ended without recording it."""
    with database_errors("closing abandoned imports"):
        return close_abandoned(get_engine(database), ended_flow_runs, dry_run=dry_run)


@task(name="purge-finished-imports", cache_policy=NO_CACHE, **transient_retries(3))
def purge_finished_imports(
    database: str | None, cutoff: datetime, dry_run: bool
) -> tuple[int, Removed]:
    """Rejects, chunk ledger and claims of imports finished before `cutoff`."""
    engine = get_engine(database)
    removed = Removed()
    with database_errors("purging finished imports"):
        finished = purgeable_imports(engine, cutoff)
        for import_id in finished:
            removed += purge_import(engine, import_id, cutoff, dry_run=dry_run)
    return len(finished), removed


@task(name="purge-replayed-dead-letters", cache_policy=NO_CACHE, **transient_retries(3))
def purge_replayed_dead_letters(database: str | None, cutoff: datetime, dry_run: bool) -> Removed:
    """Dead letters replayed before `cutoff`."""
    with database_errors("purging replayed dead letters"):
        return delete_replayed_dead_letters(get_engine(database), cutoff, dry_run=dry_run)
