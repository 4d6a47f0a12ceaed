"""The client endpoints: submit, upload, status, list, results, logs, cancel, download."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.client.schemas.sorting import FlowRunSort
from starlette.concurrency import run_in_threadpool

from service import describe, jobs, results, signing, uploads
from service.bodies import read_json
from service.context import Ctx, Key, Services, rate_limit
from service.errors import ServiceError, forbidden
from service.filters import listed_after, status_filter, tags_filter
from service.keys import ApiKey
from service.pagination import (
    MAX_SEEN,
    Keyset,
    check_limit,
    decode_cursor,
    decode_keyset,
    encode_cursor,
    page,
)
from service.status import status_of
from tasks.db.engine import get_engine

router = APIRouter(prefix="/api/batch")
Status = Literal[
    "queued", "delayed", "active", "completed", "failed", "cancelling", "cancelled", "paused"
]


@router.post("/jobs", status_code=202, summary="Submit a job")
async def submit_job(request: Request, key: Key, ctx: Ctx) -> dict[str, Any]:
    rate_limit(ctx, key)
    body = await read_json(request, ctx.settings.max_json_bytes)
    return await jobs.submit(ctx, key, body)


@router.post("/jobs/bulk", status_code=202, summary="Submit up to 100 jobs")
async def submit_jobs(request: Request, key: Key, ctx: Ctx) -> dict[str, Any]:
    body = await read_json(request, ctx.settings.max_json_bytes)
    bodies = body.get("jobs") if isinstance(body, dict) else body
    return {"jobs": await jobs.submit_many(ctx, key, bodies)}


@router.post("/uploads", status_code=201, summary="Upload a CSV file (streamed to disk)")
async def upload(request: Request, key: Key, ctx: Ctx) -> dict[str, Any]:
    rate_limit(ctx, key)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("text/csv", "application/octet-stream"):
        raise ServiceError(415, "unsupported_media_type", "send the file as Content-Type: text/csv")
    limit = ctx.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise uploads.too_large(limit)
    sink = await uploads.receive(request.stream(), ctx.settings.uploads, limit)
    return await run_in_threadpool(uploads.record_upload, ctx.engine, key.owner, sink)


@router.get("/jobs", summary="Your jobs, newest first")
async def list_jobs(
    *,
    status: Status | None = None,
    type: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    key: Key,
    ctx: Ctx,
) -> dict[str, Any]:
    check_limit(limit)
    after = decode_keyset(cursor)
    tags = [jobs.SERVICE_TAG] if key.admin else [jobs.SERVICE_TAG, jobs.owner_tag(key.owner)]
    now = datetime.now(UTC)
    wanted = status_filter(status, now, tags) if status else tags_filter(tags)
    runs = await ctx.client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[type])) if type else None,
        flow_run_filter=listed_after(wanted, after) if after else wanted,
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=limit + 1,
    )
    names = {t.deployment_id: name for name, t in (await ctx.catalog.types()).items()}
    items = [
        {
            "jobId": str(run.id),
            "type": names.get(run.deployment_id) if run.deployment_id else None,
            "status": status_of(run, now),
            "createdAt": run.created.isoformat() if run.created else None,
        }
        for run in runs
    ]
    return page(items, limit, _keyset_after(runs[:limit], after))


def _keyset_after(runs: list[FlowRun], previous: Keyset | None) -> Keyset | None:
    """Where the list goes on after `runs`: the last one's expected start, with every run of
    that time listed so far (runs created together can share it)."""
    if not runs:
        return None
    last = runs[-1].expected_start_time
    if last is None:  # a run created without a schedule; a job's run always has one
        return None
    seen = [str(run.id) for run in runs if run.expected_start_time == last]
    if previous is not None and previous.before == last:
        seen = previous.seen + seen
    if len(seen) > MAX_SEEN:  # more jobs of one instant than a cursor holds: go past them
        return Keyset(last - timedelta(microseconds=1), [])
    return Keyset(last, seen)


@router.get("/jobs/{job_id}", summary="A job's status and progress")
async def job_status(job_id: str, key: Key, ctx: Ctx) -> dict[str, Any]:
    job = await run_in_threadpool(jobs.find_job, ctx.engine, job_id, key)
    return await describe.describe(ctx, job)


@router.get("/jobs/{job_id}/results", summary="Rejected rows, dead letters or the exported file")
async def job_results(
    *,
    job_id: str,
    limit: int = 100,
    cursor: str | None = None,
    key: Key,
    ctx: Ctx,
) -> dict[str, Any]:
    check_limit(limit)
    after = decode_cursor(cursor)
    job = await run_in_threadpool(jobs.find_job, ctx.engine, job_id, key)
    engine = get_engine(job.database or ctx.settings.database)
    if job.import_id:
        return await run_in_threadpool(results.import_rejects, engine, job.import_id, after, limit)
    record = await run_in_threadpool(results.export_record, engine, job.job_id)
    if record is not None:
        item = results.export_item(
            record, ctx.settings.secret, job.job_id, ctx.settings.link_ttl_seconds
        )
        return {"items": [] if after else [item], "nextCursor": None}
    return await run_in_threadpool(results.push_dead_letters, engine, job.job_id, after, limit)


@router.get("/jobs/{job_id}/logs", summary="A job's log lines")
async def job_logs(
    *,
    job_id: str,
    level: Literal["debug", "info", "warning", "error", "critical"] = "warning",
    limit: int = 100,
    cursor: str | None = None,
    key: Key,
    ctx: Ctx,
) -> dict[str, Any]:
    check_limit(limit)
    offset = decode_cursor(cursor) or 0
    await run_in_threadpool(jobs.find_job, ctx.engine, job_id, key)
    lines, more = await describe.logs(ctx, job_id, level, offset, limit)
    return {"items": lines, "nextCursor": encode_cursor(offset + limit) if more else None}


@router.post("/jobs/{job_id}/cancel", status_code=202, summary="Cancel a job")
async def cancel_job(job_id: str, key: Key, ctx: Ctx) -> dict[str, Any]:
    await run_in_threadpool(jobs.find_job, ctx.engine, job_id, key)
    run = await describe.read_run(ctx, job_id)
    if run.state_type in (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED):
        raise ServiceError(
            409, "conflict", f"the job already ended ({run.state_type.value.lower()})"
        )
    if run.state_type in (StateType.CANCELLED, StateType.CANCELLING):
        return {"status": status_of(run, datetime.now(UTC))}
    # Proposed, not forced, as `prefect flow-run cancel` does: the server cancels a run no
    # worker holds yet at once, asks a running one's worker to stop it (an import keeps the
    # chunks already committed), and refuses if the run ended since it was read above.
    answer = await ctx.client.set_flow_run_state(UUID(job_id), State(type=StateType.CANCELLING))
    if answer.status is SetStateStatus.ABORT or answer.state is None:
        ended = await describe.read_run(ctx, job_id)
        raise ServiceError(
            409, "conflict", f"the job already ended ({status_of(ended, datetime.now(UTC))})"
        )
    cancelled = answer.state.type is StateType.CANCELLED
    return {"status": "cancelled" if cancelled else "cancelling"}


@router.get(
    "/exports/{job_id}/download",
    summary="Download an export through its signed link (no API key)",
    response_class=FileResponse,
)
async def download(
    *,
    job_id: str,
    expires: str = Query(default=""),
    signature: str = Query(default=""),
    ctx: Ctx,
) -> FileResponse:
    # ASCII digits only: "²" and other Unicode digits pass isdigit() but not int().
    if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        raise forbidden("the link is not valid")
    verdict = signing.check(
        ctx.settings.secret, job_id, int(expires), signature, datetime.now(UTC).timestamp()
    )
    if verdict == "forged":
        raise forbidden("the link is not valid")
    gone = ServiceError(410, "gone", "the link expired or the file was cleaned up")
    if verdict == "expired":
        raise gone
    job = await run_in_threadpool(_job_row, ctx, job_id)
    engine = get_engine(job.database or ctx.settings.database)
    record = await run_in_threadpool(results.export_record, engine, job_id)
    path = results.downloadable(record, datetime.now(UTC))
    if path is None:
        raise gone
    return FileResponse(path, filename=path.name, media_type="application/octet-stream")


def _job_row(ctx: Services, job_id: str) -> Any:
    """The job behind a correctly signed link (the signature stands in for the key)."""
    anyone = ApiKey(key_id="", owner="", types=None, queues=frozenset(), admin=True)
    try:
        return jobs.find_job(ctx.engine, job_id, anyone)
    except ServiceError:
        raise ServiceError(410, "gone", "the link expired or the file was cleaned up") from None
