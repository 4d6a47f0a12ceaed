"""Send the rows of a table or query to an API, rate-limited, idempotent, nothing dropped."""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field

from tasks.api.push_source import plan_push
from tasks.api.send import SendCounts, push_rows
from tasks.common.deadline import HOUR, RunTimeoutSeconds, with_run_timeout
from tasks.http.caller import HttpCaller
from tasks.http.options import (
    Concurrency,
    Failures,
    HttpOptions,
    PositiveSeconds,
    RatePerSecond,
    Retries,
    Seconds,
    api_task_runner,
    documents_http_parameters,
)
from tasks.http.stats import CallSummary, RequestCounts


class PushResult(RequestCounts):
    """What one push did; `sent = succeeded + dead_lettered`, in records."""

    sent: int
    succeeded: int
    failed: int
    dead_lettered: int

    @classmethod
    def of(cls, totals: SendCounts, calls: CallSummary) -> PushResult:
        """The result of a push that sent `totals` with the requests `calls`."""
        return cls(**totals.pushed(), **calls.request_counts())


@flow(name="api-push", log_prints=True, task_runner=api_task_runner())
@with_run_timeout
@documents_http_parameters
def api_push(
    *,
    base_url: str,
    path: str,
    key: list[str],
    table: str | None = None,
    query: str | None = None,
    method: Literal["POST", "PUT", "PATCH"] = "POST",
    batch_size: Annotated[int, Field(ge=1)] = 1,
    headers: dict[str, str] | None = None,
    auth_block: str | None = None,
    rate_limit_per_second: RatePerSecond = 10.0,
    max_concurrency: Concurrency = 5,
    global_limit: str | None = None,
    request_timeout_seconds: PositiveSeconds = 30.0,
    max_retries: Retries = 5,
    backoff_seconds: PositiveSeconds = 0.5,
    max_retry_after: Seconds = 60.0,
    breaker_failures: Failures = 5,
    breaker_pause_seconds: Seconds = 30.0,
    database: str | None = None,
    timeout_seconds: RunTimeoutSeconds = 2 * HOUR,
) -> PushResult:
    """Send every row of a table (or query) to an API, each request with an Idempotency-Key.

    Retries, reruns and replays never apply a record twice. What still fails after the
    retries, gets a 4xx or a redirect, or meets an open circuit, goes to
    batchflows_dead_letters (see replay-dead-letters).

    Args:
        base_url: Root of the API, e.g. https://api.example.com/v1 (credentials never go in
            it: use auth_block).
        path: Path to send to, e.g. /users; with batch_size 1 it may name record fields,
            e.g. /users/{id} for a PUT (each value is sent as one encoded path segment).
        key: Columns that identify a record; part of its Idempotency-Key.
        table: Table to send (optionally schema.table), read in key order.
        query: Or a read-only SELECT whose rows are sent (give it an ORDER BY).
        method: POST, PUT or PATCH.
        batch_size: Records per request: 1 sends each record as the JSON body, more send a
            JSON list.
        database: SQLAlchemy URL or SqlAlchemyConnector block name; default
            $BATCHFLOWS_DATABASE_URL, then sqlite:///data/batchflows.db.
        timeout_seconds: Time limit of the whole run (default 2 hours): past it the run
            ends Failed (TimedOut); every record sent so far is counted or
            dead-lettered, and a rerun sends the rest with the same idempotency keys.
    """
    http = HttpOptions.of(
        headers=headers,
        auth_block=auth_block,
        rate_limit_per_second=rate_limit_per_second,
        max_concurrency=max_concurrency,
        global_limit=global_limit,
        request_timeout_seconds=request_timeout_seconds,
        max_retries=max_retries,
        backoff_seconds=backoff_seconds,
        max_retry_after=max_retry_after,
        breaker_failures=breaker_failures,
        breaker_pause_seconds=breaker_pause_seconds,
    )
    plan = plan_push(
        table=table,
        query=query,
        base_url=base_url,
        path=path,
        method=method,
        key=key,
        batch_size=batch_size,
        headers=headers,
        database=database,
    )
    caller = HttpCaller(http, base_url=base_url, name=plan.source)
    totals = push_rows(caller, plan, flow_run.get_id())
    return PushResult.of(totals, caller.summary())
