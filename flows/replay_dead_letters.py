"""Re-send pending dead letters to the URL they were meant for, with their idempotency keys."""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel

from tasks.api.dead_letters import count_pending, pending_deliveries, pending_filter
from tasks.api.progress import ApiProgress
from tasks.api.send import REQUESTS_PER_GROUP, SendCounts, groups_of, send_all
from tasks.db.engine import get_engine
from tasks.http.caller import HttpCaller
from tasks.http.options import HttpOptions, api_task_runner, documents_http_parameters


class ReplayResult(BaseModel):
    """What one replay did, in dead letters: `replayed = succeeded + still_failing`."""

    replayed: int
    succeeded: int
    still_failing: int
    requests: int
    retries: int
    rate_limited: int
    requests_per_second: float


@flow(name="replay-dead-letters", log_prints=True, task_runner=api_task_runner())
@documents_http_parameters
def replay_dead_letters(
    *,
    flow_run_id: str | None = None,
    older_than_minutes: float | None = None,
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
) -> ReplayResult:
    """Re-send the pending letters of batchflows_dead_letters (all of them by default).

    Each goes to its own method and URL with its original payload, plain headers and
    Idempotency-Key, so an API that already applied it does not apply it twice. Delivered
    letters are marked replayed_at; the others stay pending with their new attempt count.

    The HTTP parameters (headers to breaker_pause_seconds) are described once, in
    `tasks.http.options.HttpOptions`; `@documents_http_parameters` adds them below.

    Args:
        flow_run_id: Only the letters of this api-push flow run.
        older_than_minutes: Only letters created at least this many minutes ago.
        database: SQLAlchemy URL or SqlAlchemyConnector block name; default
            $BATCHFLOWS_DATABASE_URL, then sqlite:///data/batchflows.db.
    """
    # The HTTP settings are this flow's own parameters: gathered in one model.
    http = HttpOptions.from_parameters(locals())
    engine = get_engine(database)
    selected = pending_filter(flow_run_id, older_than_minutes)
    total, up_to_id = count_pending(engine, selected)
    caller = HttpCaller(http, name="replay-dead-letters")
    progress = ApiProgress("replay-dead-letters", "letters", caller)
    progress.total = total
    groups = groups_of(pending_deliveries(engine, selected, up_to_id), REQUESTS_PER_GROUP)
    totals = send_all(
        caller,
        groups,
        database=database,
        flow_run_id=flow_run_id,
        progress=progress,
        view=SendCounts.replayed,
    )
    progress.finish(totals.requests, totals.replayed())
    calls = caller.summary()
    return ReplayResult(
        **totals.replayed(),
        **calls.model_dump(include={"requests", "retries", "rate_limited", "requests_per_second"}),
    )
