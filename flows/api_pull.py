"""Pull a paginated JSON REST API into a table, rate-limited, incrementally, exactly once."""

from __future__ import annotations

import json

from prefect import flow
from pydantic import BaseModel

from tasks.api.pagination import Pagination, Scalar
from tasks.api.progress import ApiProgress
from tasks.api.pull_pages import fetch_page, pages_in_order, store_pages
from tasks.api.pull_plan import plan_pull
from tasks.api.watermark import Incremental
from tasks.common.run_log import run_logger
from tasks.http.caller import HttpCaller
from tasks.http.client import endpoint
from tasks.http.options import HttpOptions, api_task_runner, documents_http_parameters


class PullResult(BaseModel):
    """What one pull did."""

    source: str
    requests: int
    pages: int
    records: int
    inserted: int
    updated: int
    unchanged: int
    retries: int
    rate_limited: int
    requests_per_second: float
    cursor: str | None


@flow(name="api-pull", log_prints=True, task_runner=api_task_runner())
@documents_http_parameters
def api_pull(
    *,
    base_url: str,
    path: str,
    table: str,
    key: list[str],
    pagination: Pagination | None = None,
    page_size: int = 100,
    params: dict[str, Scalar] | None = None,
    headers: dict[str, str] | None = None,
    auth_block: str | None = None,
    incremental: Incremental | None = None,
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
) -> PullResult:
    """Read every page of `base_url` + `path` and upsert its records into `table` on `key`.

    The HTTP parameters (headers to breaker_pause_seconds) are described once, in
    `tasks.http.options.HttpOptions`; `@documents_http_parameters` adds them below.

    Args:
        base_url: Root of the API, e.g. https://api.example.com/v1.
        path: Path of the collection under base_url, e.g. /users.
        table: Target table (optionally schema.table); it must exist, with a primary key or
            unique constraint on `key`.
        key: Fields of a record (and columns of the table) that identify it.
        pagination: How the API pages: type page, offset, cursor or link, the query
            parameter names (json-server's by default) and records_path, where the list of
            records sits in a response (default: the body itself).
        page_size: Records asked for per page.
        params: Fixed query parameters sent with every request.
        incremental: Fetch only what changed: `field` of the records (e.g. updated_at) and
            the query `param` asking for records at or after a value (e.g. updated_at_gte).
            The mark is stored in batchflows_sync_state with the pages it covers.
        database: SQLAlchemy URL or SqlAlchemyConnector block name; default
            $BATCHFLOWS_DATABASE_URL, then sqlite:///data/batchflows.db.
    """
    # The HTTP settings are this flow's own parameters: gathered in one model.
    http = HttpOptions.from_parameters(locals())
    plan = plan_pull(
        url=endpoint(base_url, path),
        table=table,
        key=key,
        pagination=pagination or Pagination(),
        page_size=page_size,
        params=params or {},
        incremental=incremental,
        database=database,
    )
    caller = HttpCaller(http, name=plan.source)
    progress = ApiProgress("api-pull", "pages", caller)
    stream = pages_in_order(caller, plan, fetch_page(caller, plan, plan.first))
    progress.total = stream.total
    totals = store_pages(plan, stream.pages, progress)
    progress.finish(totals.pages, totals.counts())
    calls = caller.summary()
    mark = json.loads(totals.mark) if totals.mark else None
    run_logger().info(
        "%s: %d records in %d pages (%d inserted, %d updated), %d requests at %.1f/s",
        plan.source,
        totals.records,
        totals.pages,
        totals.inserted,
        totals.updated,
        calls.requests,
        calls.requests_per_second,
    )
    return PullResult(
        source=plan.source,
        **totals.counts(),
        **calls.model_dump(include={"requests", "retries", "rate_limited", "requests_per_second"}),
        cursor=str(mark) if mark is not None else totals.cursor,
    )
