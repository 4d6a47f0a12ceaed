"""One job as a client sees it: status, progress, times, error or result, logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterLevel,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import LogSort
from prefect.exceptions import ObjectNotFound
from sqlalchemy.engine import Row
from starlette.concurrency import run_in_threadpool

from service.context import Services
from service.errors import not_found
from service.status import (
    empty_progress,
    import_progress,
    may_have_ledger,
    one_line_error,
    percentage_progress,
    status_of,
)
from tasks.db.engine import get_engine

MAX_CACHED_RESULTS = 10_000
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


async def read_run(ctx: Services, job_id: str) -> FlowRun:
    """The job's flow run; 404 once it was deleted from Prefect."""
    try:
        return await ctx.client.read_flow_run(UUID(job_id))
    except ObjectNotFound:
        raise not_found() from None


async def _artifacts(ctx: Services, job_id: str, kind: str) -> list[Any]:
    return await ctx.client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(job_id)]),
            type=ArtifactFilterType(any_=[kind]),
        )
    )


async def _progress(ctx: Services, job: Row[Any], run: FlowRun) -> dict[str, Any]:
    if job.import_id:
        if not may_have_ledger(job.import_id, job.job_id, run.start_time is not None):
            return empty_progress()
        engine = get_engine(job.database or ctx.settings.database)
        found = await run_in_threadpool(import_progress, engine, job.import_id)
        return found or empty_progress()
    artifacts = await _artifacts(ctx, job.job_id, "progress")
    return percentage_progress(max((a.data for a in artifacts), default=None))


async def _result(ctx: Services, job_id: str) -> Any:
    """The first row of the run's summary table artifact (the flow's result), kept once read."""
    if job_id in ctx.results:
        return ctx.results[job_id]
    result = None
    for artifact in await _artifacts(ctx, job_id, "table"):
        if (artifact.key or "").endswith("-summary") and artifact.data:
            rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
            result = rows[0] if rows else None
    if len(ctx.results) >= MAX_CACHED_RESULTS:
        ctx.results.pop(next(iter(ctx.results)))
    ctx.results[job_id] = result
    return result


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


async def describe(ctx: Services, job: Row[Any]) -> dict[str, Any]:
    """The job's status body."""
    run = await read_run(ctx, job.job_id)
    status = status_of(run, datetime.now(UTC))
    return {
        "jobId": job.job_id,
        "type": job.type,
        "queue": job.queue,
        "status": status,
        "progress": await _progress(ctx, job, run),
        "createdAt": _time(run.created),
        "startedAt": _time(run.start_time),
        "completedAt": _time(run.end_time)
        if status in ("completed", "failed", "cancelled")
        else None,
        "error": one_line_error(run.state.message if run.state else None)
        if status == "failed"
        else None,
        "result": await _result(ctx, job.job_id) if status == "completed" else None,
    }


async def logs(
    ctx: Services, job_id: str, level: str, offset: int, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """The run's log lines at `level` and above, oldest first; whether more follow."""
    found = await ctx.client.read_logs(
        LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[UUID(job_id)]),
            level=LogFilterLevel(ge_=LEVELS[level]),
        ),
        limit=limit + 1,
        offset=offset,
        sort=LogSort.TIMESTAMP_ASC,
    )
    lines = [
        {"time": log.timestamp.isoformat(), "level": _level_name(log.level), "message": log.message}
        for log in found[:limit]
    ]
    return lines, len(found) > limit


def _level_name(level: int) -> str:
    return next(
        (name for name, value in sorted(LEVELS.items(), key=lambda x: -x[1]) if level >= value),
        "debug",
    )
