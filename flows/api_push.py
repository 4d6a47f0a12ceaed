"""Send the rows of a table or query to an API, rate-limited, idempotent, nothing dropped."""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel

from tasks.api.progress import ApiProgress
from tasks.api.push_source import plan_push, stream_rows
from tasks.api.send import REQUESTS_PER_GROUP, SendCounts, groups_of, send_all
from tasks.db.engine import get_engine
from tasks.http.auth import plain_headers
from tasks.http.caller import HttpCaller
from tasks.http.client import endpoint
from tasks.http.options import HttpOptions, api_task_runner, documents_http_parameters


class PushResult(BaseModel):
    """What one push did; `sent = succeeded + dead_lettered`, in records."""

    sent: int
    succeeded: int
    failed: int
    dead_lettered: int
    requests: int
    retries: int
    rate_limited: int
    requests_per_second: float


@flow(name="api-push", log_prints=True, task_runner=api_task_runner())
@documents_http_parameters
def api_push(
    *,
    base_url: str,
    path: str,
    key: list[str],
    table: str | None = None,
    query: str | None = None,
    method: Literal["POST", "PUT", "PATCH"] = "POST",
    batch_size: int = 1,
    headers: dict[str, str] | None = None,
    auth_block: str | None = None,
    rate_limit_per_second: float = 10.0,
    max_concurrency: int = 5,
    global_limit: str | None = None,
    timeout_seconds: float = 30.0,
    max_retries: int = 5,
    backoff_seconds: float = 0.5,
    max_retry_after: float = 60.0,
    breaker_failures: int = 5,
    breaker_pause_seconds: float = 30.0,
    database: str | None = None,
) -> PushResult:
    """Send every row of `table` (or `query`) to `base_url` + `path`, one request per batch.

    Each request carries an Idempotency-Key derived from the URL, method, key values and
    payload, so retries, reruns and replays never apply a record twice. What still fails after
    the retries, or gets a 4xx, goes to batchflows_dead_letters (see replay-dead-letters).

    The HTTP parameters (headers to breaker_pause_seconds) are described once, in
    `tasks.http.options.HttpOptions`; `@documents_http_parameters` adds them below.

    Args:
        base_url: Root of the API, e.g. https://api.example.com/v1.
        path: Path to send to, e.g. /users; with batch_size 1 it may name record fields,
            e.g. /users/{id} for a PUT.
        key: Columns that identify a record; part of its Idempotency-Key.
        table: Table to send (optionally schema.table), read in key order.
        query: Or a read-only SELECT whose rows are sent (give it an ORDER BY).
        method: POST, PUT or PATCH.
        batch_size: Records per request: 1 sends each record as the JSON body, more send a
            JSON list.
        database: SQLAlchemy URL or SqlAlchemyConnector block name; default
            $BATCHFLOWS_DATABASE_URL, then sqlite:///data/batchflows.db.
    """
    # The HTTP settings are this flow's own parameters: gathered in one model.
    http = HttpOptions.from_parameters(locals())
    plan = plan_push(
        table=table,
        query=query,
        url=endpoint(base_url, path),
        method=method,
        key=key,
        batch_size=batch_size,
        headers=plain_headers(headers),
        database=database,
    )
    caller = HttpCaller(http, name=plan.url)
    progress = ApiProgress("api-push", "records", caller)
    progress.total = plan.total
    deliveries = plan.deliveries(stream_rows(get_engine(database), plan.sql))
    groups = groups_of(deliveries, REQUESTS_PER_GROUP)
    totals = send_all(
        caller,
        groups,
        database=database,
        flow_run_id=flow_run.id,
        progress=progress,
        view=SendCounts.pushed,
    )
    progress.finish(totals.records, totals.pushed())
    calls = caller.summary()
    return PushResult(
        **totals.pushed(),
        **calls.model_dump(include={"requests", "retries", "rate_limited", "requests_per_second"}),
    )
