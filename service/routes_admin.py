"""Queues (counts for everyone; pause and resume for admins), cleaning old jobs, health."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    WorkPoolFilter,
    WorkPoolFilterName,
    WorkQueueFilter,
    WorkQueueFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from deployments.bootstrap import POOL
from service.bodies import read_json
from service.context import Ctx, Key, Services, admin
from service.errors import bad_request, not_found
from service.filters import status_filter
from service.jobs import SERVICE_TAG
from service.tables import jobs
from service.uploads import remove_uploads_before

router = APIRouter()
COUNTED = {
    "waiting": "queued",
    "active": "active",
    "completed": "completed",
    "failed": "failed",
    "delayed": "delayed",
    "paused": "paused",
}
FINISHED = (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)


async def _counts(ctx: Services, queue: str, now: datetime) -> dict[str, int]:
    async def count(status: str) -> int:
        return await ctx.client.count_flow_runs(
            flow_run_filter=status_filter(status, now),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[POOL])),
            work_queue_filter=WorkQueueFilter(name=WorkQueueFilterName(any_=[queue])),
        )

    values = await asyncio.gather(*(count(status) for status in COUNTED.values()))
    return dict(zip(COUNTED, values, strict=True))


@router.get("/api/batch/queues", summary="Jobs per work queue, and whether it is paused")
async def queues(_key: Key, ctx: Ctx) -> dict[str, Any]:
    now = datetime.now(UTC)
    found = sorted(await ctx.client.read_work_queues(work_pool_name=POOL), key=lambda q: q.priority)
    counts = await asyncio.gather(*(_counts(ctx, q.name, now) for q in found))
    return {
        "queues": [
            {"name": q.name, "priority": q.priority, "isPaused": q.is_paused, **c}
            for q, c in zip(found, counts, strict=True)
        ]
    }


async def _set_paused(ctx: Services, name: str, paused: bool) -> dict[str, Any]:
    try:
        queue = await ctx.client.read_work_queue_by_name(name, work_pool_name=POOL)
    except ObjectNotFound:
        raise not_found("queue") from None
    await ctx.client.update_work_queue(queue.id, is_paused=paused)
    return {"name": name, "isPaused": paused}


@router.post("/api/batch/queues/{name}/pause", summary="Pause a queue (admin)")
async def pause(name: str, key: Key, ctx: Ctx) -> dict[str, Any]:
    admin(key)
    return await _set_paused(ctx, name, True)


@router.post("/api/batch/queues/{name}/resume", summary="Resume a queue (admin)")
async def resume(name: str, key: Key, ctx: Ctx) -> dict[str, Any]:
    admin(key)
    return await _set_paused(ctx, name, False)


class CleanBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    olderThanHours: float = Field(ge=0, description="Finished longer ago than this")  # noqa: N815


def _candidates(ctx: Services, cutoff: datetime) -> list[str]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(sa.select(jobs.c.job_id).where(jobs.c.created_at < cutoff)).all()
    return [row.job_id for row in rows]


def _forget(ctx: Services, job_ids: list[str]) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(jobs.delete().where(jobs.c.job_id.in_(job_ids)))


@router.post("/api/batch/jobs/clean", summary="Delete finished jobs older than an age (admin)")
async def clean(request: Request, key: Key, ctx: Ctx) -> dict[str, Any]:
    """Deletes each finished job's flow run from Prefect and its record here, and the
    uploads received before the cutoff that no unfinished job reads."""
    admin(key)
    raw = await read_json(request, 4096)
    try:
        body = CleanBody.model_validate(raw)
    except ValueError:
        raise bad_request("give olderThanHours >= 0", {"olderThanHours": "a number >= 0"}) from None
    cutoff = datetime.now(UTC) - timedelta(hours=body.olderThanHours)
    candidates = await run_in_threadpool(_candidates, ctx, cutoff)
    deleted: list[str] = []
    for start in range(0, len(candidates), 200):
        batch = candidates[start : start + 200]
        runs = await ctx.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(i) for i in batch]))
        )
        alive = {str(run.id): run for run in runs}
        for job_id in batch:
            run = alive.get(job_id)
            if run is None:
                deleted.append(job_id)  # already gone from Prefect
            elif run.state_type in FINISHED and run.end_time and run.end_time < cutoff:
                await ctx.client.delete_flow_run(run.id)
                deleted.append(job_id)
    if deleted:
        await run_in_threadpool(_forget, ctx, deleted)
    in_use = await _sources_of_unfinished_jobs(ctx)
    removed = await run_in_threadpool(remove_uploads_before, ctx.engine, cutoff, in_use)
    return {"deleted": len(deleted), "uploadsDeleted": removed}


async def _sources_of_unfinished_jobs(ctx: Services) -> set[str]:
    """The `source` of every job not finished yet: an upload a queued or running import
    still has to read, however old, is kept."""
    unfinished = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[SERVICE_TAG]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=list(FINISHED))),
    )
    sources: set[str] = set()
    offset = 0
    while runs := await ctx.client.read_flow_runs(
        flow_run_filter=unfinished, offset=offset, limit=200
    ):
        sources |= {str(run.parameters["source"]) for run in runs if run.parameters.get("source")}
        offset += len(runs)
    return sources


def _database_ok(ctx: Services) -> None:
    with ctx.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


@router.get("/healthz", summary="Liveness, with the Prefect API and the database")
async def healthz(ctx: Ctx) -> JSONResponse:
    checks: dict[str, str] = {}
    failure = await ctx.client.api_healthcheck()
    checks["prefect"] = "ok" if failure is None else "unreachable"
    try:
        await run_in_threadpool(_database_ok, ctx)
        checks["database"] = "ok"
    except sa.exc.SQLAlchemyError:
        checks["database"] = "unreachable"
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unhealthy", **checks}, 200 if healthy else 503
    )
