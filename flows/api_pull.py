"""Pull a paginated JSON REST API into a table, rate-limited, incrementally, exactly once."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from tasks.api.pagination import PagePagination, Pagination, Scalar
from tasks.api.pull_pages import PullTotals, pull_pages
from tasks.api.pull_plan import PullPlan, plan_pull
from tasks.api.watermark import Incremental
from tasks.common.deadline import HOUR, RunTimeoutSeconds, with_run_timeout
from tasks.common.run_log import run_logger
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


class PullResult(RequestCounts):
    """What one pull did."""

    source: str
    pages: int
    records: int
    inserted: int
    updated: int
    unchanged: int
    cursor: str | None

    @classmethod
    def of(cls, plan: PullPlan, totals: PullTotals, calls: CallSummary) -> PullResult:
        """The result of a pull that stored `totals` with the requests `calls`."""
        return cls(
            source=plan.source,
            pages=totals.pages,
            records=totals.records,
            inserted=totals.inserted,
            updated=totals.updated,
            unchanged=totals.unchanged,
            cursor=totals.last_position(),
            **calls.request_counts(),
        )


@flow(name="api-pull", log_prints=True, task_runner=api_task_runner())
@with_run_timeout
@documents_http_parameters
def api_pull(
    *,
    base_url: str,
    path: str,
    table: str,
    key: list[str],
    pagination: Pagination = PagePagination(),  # noqa: B008 - a frozen default, shown in the form
    page_size: Annotated[int, Field(ge=1)] = 100,
    max_pages: Annotated[int, Field(ge=1)] = 10_000,
    params: dict[str, Scalar] | None = None,
    incremental: Incremental | None = None,
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
) -> PullResult:
    """Read every page of an API collection and upsert its records into a table, on its key.

    Args:
        base_url: Root of the API, e.g. https://api.example.com/v1 (credentials never go in
            it: use auth_block).
        path: Path of the collection under base_url, e.g. /users or /users?active=true.
        table: Target table (optionally schema.table); it must exist, with a primary key or
            unique constraint on `key`.
        key: Fields of a record (and columns of the table) that identify it.
        pagination: How the API pages: type page, offset, cursor, link or starting_after,
            the query parameter names (json-server's by default) and records_path, where the
            list of records sits in a response (default: the body itself).
        page_size: Records asked for per page.
        max_pages: Most pages one run reads; more stops the run with a clear error.
        params: Fixed query parameters sent with every request.
        incremental: Fetch only what changed: `field` of the records (e.g. updated_at) and
            the query `param` asking for records at or after a value (e.g. updated_at_gte).
            The mark is stored in batchflows_sync_state with the pages it covers. With page
            or offset pagination each next page is asked for from the last value read
            (seek, on by default), so records changing during the pull are not skipped.
        database: SQLAlchemy URL or SqlAlchemyConnector block name; default
            $BATCHFLOWS_DATABASE_URL, then sqlite:///data/batchflows.db.
        timeout_seconds: Time limit of the whole run (default 2 hours): past it the run
            ends Failed (TimedOut); the pages committed so far stay, with the watermark
            they cover, and a rerun goes on from there.
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
    plan = plan_pull(
        base_url=base_url,
        path=path,
        table=table,
        key=key,
        pagination=pagination,
        page_size=page_size,
        max_pages=max_pages,
        params=params or {},
        incremental=incremental,
        database=database,
    )
    caller = HttpCaller(http, base_url=base_url, name=plan.source)
    totals = pull_pages(caller, plan)
    result = PullResult.of(plan, totals, caller.summary())
    run_logger().info(
        "%s: %d records in %d pages (%d inserted, %d updated), %d requests at %.1f/s",
        result.source,
        result.records,
        result.pages,
        result.inserted,
        result.updated,
        result.requests,
        result.requests_per_second,
    )
    return result
