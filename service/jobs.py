"""Submitting jobs: a job is a flow run of a deployment, created through the Prefect client.

Everything that could refuse a job is checked before the run exists: type and queue scopes,
what the parameters may reach, the deployment's parameter schema. The owner is recorded in
`batchflows_jobs` and as a Prefect tag; an idempotency key is namespaced by owner, so the same
key from the same owner always returns the first run.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import sqlalchemy as sa
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Engine, Row
from starlette.concurrency import run_in_threadpool

from service.catalog import JobType
from service.context import Services, rate_limit
from service.errors import ServiceError, bad_request, forbidden, not_found
from service.keys import ApiKey
from service.parameters import check_reach, check_schema, owned_import_id
from service.status import status_of
from service.tables import jobs
from service.uploads import PREFIX, check_records, record_upload, resolve_upload, write_records
from tasks.exports.files import exports_root

SERVICE_TAG = "batchflows-service"
ESTIMATE_SECONDS = 60.0
MAX_BULK = 100


class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    priority: Literal["high", "default", "low"] | None = None
    idempotencyKey: str | None = Field(default=None, min_length=1, max_length=200)  # noqa: N815


class JobBody(BaseModel):
    """`{"type", "parameters", "options"}` as a client sends it."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field(min_length=1, max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)
    options: JobOptions = Field(default_factory=JobOptions)


def owner_tag(owner: str) -> str:
    return f"owner:{owner}"


def parse_body(body: Any) -> JobBody:
    """The job body, or 400 naming each wrong field."""
    try:
        return JobBody.model_validate(body)
    except ValidationError as exc:
        fields = {
            ".".join(str(p) for p in error["loc"]) or "body": error["msg"] for error in exc.errors()
        }
        raise bad_request("invalid job body", fields) from None


def _idempotency_key(owner: str, key: str) -> str:
    # The owner's length first: "a:b" + "c" and "a" + "b:c" stay distinct.
    return f"{SERVICE_TAG}:{len(owner)}:{owner}:{key}"


def find_job(engine: Engine, job_id: str, key: ApiKey) -> Row[Any]:
    """The job's record if the caller may see it; 404 alike for missing and someone else's."""
    try:
        UUID(job_id)
    except ValueError:
        raise not_found() from None
    query = sa.select(jobs).where(jobs.c.job_id == job_id)
    if not key.admin:
        query = query.where(jobs.c.owner == key.owner)
    with engine.connect() as conn:
        row = conn.execute(query).one_or_none()
    if row is None:
        raise not_found()
    return row


def _existing(engine: Engine, owner: str, idempotency_key: str) -> str | None:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(jobs.c.job_id).where(
                jobs.c.owner == owner, jobs.c.idempotency_key == idempotency_key
            )
        ).scalar_one_or_none()
    return str(found) if found else None


def _record(engine: Engine, values: dict[str, Any]) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(jobs.insert().values(**values))
    except sa.exc.IntegrityError:
        pass  # a concurrent identical submission recorded the same run first


async def _job_type(ctx: Services, key: ApiKey, body: JobBody) -> tuple[JobType, str]:
    job_type = await ctx.catalog.get(body.type)
    if job_type is None:
        known = ", ".join(sorted(await ctx.catalog.types()))
        raise bad_request(f"type: unknown job type; one of {known}", {"type": "unknown job type"})
    if not key.may_submit(job_type.name):
        raise forbidden(f"this key may not submit {job_type.name} jobs", {"type": "not in scope"})
    queue = body.options.priority or job_type.queue
    if not key.may_use(queue):
        raise forbidden(
            f"this key may not use the {queue} queue", {"options.priority": "not in scope"}
        )
    return job_type, queue


def _prepare(ctx: Services, key: ApiKey, job_type: JobType, given: dict[str, Any]) -> Any:
    """Check reach and schema; then turn inline data or an upload id into a worker path."""
    parameters = dict(given)
    data = parameters.pop("data", None)
    if data is not None:
        if "source" in parameters or "source" not in job_type.schema.get("properties", {}):
            raise bad_request(
                "data: only an import job takes data, and instead of source",
                {"data": "not allowed here"},
            )
        records = check_records(data)
        parameters["source"] = f"{PREFIX}inline"
    if not key.admin:
        check_reach(parameters, ctx.settings.database, exports_root(), job_type.defaults)
    check_schema(job_type.schema, {**job_type.defaults, **parameters})
    if not key.admin and parameters.get("import_id"):
        parameters["import_id"] = owned_import_id(key.owner, parameters["import_id"])
    source = parameters.get("source")
    if data is not None:
        sink = write_records(records, ctx.settings.uploads)
        record_upload(ctx.engine, key.owner, sink)
        parameters["source"] = str(sink.path)
    elif isinstance(source, str) and source.startswith(PREFIX):
        path = resolve_upload(ctx.engine, source, None if key.admin else key.owner)
        if path is None:
            raise bad_request("source: no such upload", {"source": "no such upload"})
        parameters["source"] = path
    return parameters


async def estimate(ctx: Services, job_type: JobType) -> float | None:
    """Mean run time in seconds of the type's last completed runs (cached a minute)."""
    cached = ctx.estimates.get(job_type.name)
    if cached and time.monotonic() - cached[0] < ESTIMATE_SECONDS:
        return cached[1]
    runs = await ctx.client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[job_type.deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
        ),
        sort=FlowRunSort.END_TIME_DESC,
        limit=20,
    )
    seconds = [run.total_run_time.total_seconds() for run in runs]
    value = round(sum(seconds) / len(seconds), 1) if seconds else None
    ctx.estimates[job_type.name] = (time.monotonic(), value)
    return value


def accepted(job_id: str, status: str, estimated: float | None) -> dict[str, Any]:
    """The 202 body of a job."""
    return {
        "jobId": job_id,
        "status": status,
        "estimatedTime": estimated,
        "statusUrl": f"/api/batch/jobs/{job_id}",
        "resultsUrl": f"/api/batch/jobs/{job_id}/results",
    }


async def submit(ctx: Services, key: ApiKey, raw: Any) -> dict[str, Any]:
    """Create the job's flow run (or find the first one for its idempotency key)."""
    body = parse_body(raw)
    job_type, queue = await _job_type(ctx, key, body)
    idempotency = body.options.idempotencyKey
    if idempotency is not None:
        first = await run_in_threadpool(_existing, ctx.engine, key.owner, idempotency)
        if first is not None:
            run = await ctx.client.read_flow_run(UUID(first))
            return accepted(first, status_of(run, datetime.now(UTC)), await estimate(ctx, job_type))
    parameters = await run_in_threadpool(_prepare, ctx, key, job_type, body.parameters)
    run = await ctx.client.create_flow_run_from_deployment(
        job_type.deployment_id,
        parameters=parameters,
        tags=[SERVICE_TAG, owner_tag(key.owner)],
        idempotency_key=_idempotency_key(key.owner, idempotency) if idempotency else None,
        work_queue_name=queue,
    )
    job_id = str(run.id)
    is_import = "import_id" in job_type.schema.get("properties", {})
    await run_in_threadpool(
        _record,
        ctx.engine,
        {
            "job_id": job_id,
            "owner": key.owner,
            "type": job_type.name,
            "queue": queue,
            "idempotency_key": idempotency,
            "database": parameters.get("database") or None,
            "import_id": (parameters.get("import_id") or job_id) if is_import else None,
        },
    )
    return accepted(job_id, "queued", await estimate(ctx, job_type))


async def submit_many(ctx: Services, key: ApiKey, bodies: Any) -> list[dict[str, Any]]:
    """Each body submitted on its own: accepted with its job, or refused with its reason."""
    if not isinstance(bodies, list) or not bodies or len(bodies) > MAX_BULK:
        raise bad_request(
            f"give a list of 1 to {MAX_BULK} jobs", {"jobs": f"1 to {MAX_BULK} job bodies"}
        )
    entries: list[dict[str, Any]] = []
    for body in bodies:
        try:
            rate_limit(ctx, key)
            entries.append({"accepted": True, **await submit(ctx, key, body)})
        except ServiceError as refused:
            entries.append({"accepted": False, "status": refused.status, **refused.body()})
    return entries
