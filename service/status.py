"""A job's status and progress: Prefect's state in the service's words, counts from the ledger.

An import's progress is read from its ledger (`batchflows_imports`, `batchflows_chunks`), which
gains a row in the same transaction as each chunk's data, so it is current the moment a chunk
commits. Other flows report a percentage through their progress artifact.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prefect.client.schemas.objects import FlowRun, StateType
from sqlalchemy.engine import Engine

from tasks.db.bookkeeping import chunks, imports

STATUSES = (
    "queued",
    "delayed",
    "active",
    "completed",
    "failed",
    "cancelling",
    "cancelled",
    "paused",
)
_BY_TYPE = {
    StateType.PENDING: "active",
    StateType.RUNNING: "active",
    StateType.COMPLETED: "completed",
    StateType.FAILED: "failed",
    StateType.CRASHED: "failed",
    StateType.CANCELLING: "cancelling",
    StateType.CANCELLED: "cancelled",
    StateType.PAUSED: "paused",
}
# Credentials in URLs (scheme://user:secret@host) never leave the service.
_URL_SECRET = re.compile(r"(\w+://[^:/@\s]+):[^@\s]+@")
MAX_ERROR_CHARS = 500


def job_status(
    state_type: StateType | None, state_name: str | None, scheduled: datetime | None, now: datetime
) -> str:
    """The service's status for a Prefect state.

    Scheduled runs are `queued` when due (waiting for a worker or a concurrency slot) and
    `delayed` when they wait for a later time (a retry's back-off, a future start).
    """
    if state_type is None:
        return "queued"
    if state_type is StateType.SCHEDULED:
        if state_name == "AwaitingRetry" or (scheduled is not None and scheduled > now):
            return "delayed"
        return "queued"
    return _BY_TYPE[state_type]


def status_of(run: FlowRun, now: datetime) -> str:
    """The status of a flow run now."""
    state = run.state
    scheduled = state.state_details.scheduled_time if state else None
    return job_status(run.state_type, run.state_name, scheduled, now)


def scrub(text: str) -> str:
    """`text` with the password of any URL in it masked."""
    return _URL_SECRET.sub(r"\1:***@", text)


def one_line_error(message: str | None) -> str | None:
    """The first line of a failure message, without credentials, at most MAX_ERROR_CHARS."""
    if not message:
        return None
    line = next((part.strip() for part in message.splitlines() if part.strip()), "")
    return scrub(line)[:MAX_ERROR_CHARS] or None


def may_have_ledger(import_id: str, job_id: str, started: bool) -> bool:
    """Whether an import's ledger may hold rows yet: a job's own import (its id is the job's)
    only once its run has started; a named import may be resumed, so its earlier runs count.
    Queued polls then skip two ledger reads."""
    return started or import_id != job_id


def empty_progress() -> dict[str, Any]:
    return {
        "percentage": 0.0,
        "processed": 0,
        "total": None,
        "successful": 0,
        "failed": 0,
        "currentChunk": 0,
        "totalChunks": None,
    }


def import_progress(engine: Engine, import_id: str) -> dict[str, Any] | None:
    """An import's counts from its ledger; None before it is planned (or in another database)."""
    totals = sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(chunks.c.rows), 0),
        sa.func.coalesce(sa.func.sum(chunks.c.failed), 0),
    ).where(chunks.c.import_id == import_id)
    try:
        with engine.connect() as conn:
            planned = conn.execute(
                sa.select(imports.c.total_rows, imports.c.chunk_count).where(
                    imports.c.import_id == import_id
                )
            ).one_or_none()
            if planned is None:
                return None
            done, processed, failed = conn.execute(totals).one()
    except (sa.exc.ProgrammingError, sa.exc.OperationalError):
        return None  # the ledger tables do not exist yet
    total = int(planned.total_rows)
    return {
        "percentage": round(100.0 * processed / total, 2) if total else 100.0,
        "processed": int(processed),
        "total": total,
        "successful": int(processed) - int(failed),
        "failed": int(failed),
        "currentChunk": int(done),
        "totalChunks": int(planned.chunk_count),
    }


def percentage_progress(percentage: float | None) -> dict[str, Any]:
    """Progress of a flow that reports only a percentage (its progress artifact)."""
    progress = empty_progress()
    progress["percentage"] = round(float(percentage or 0.0), 2)
    return progress
