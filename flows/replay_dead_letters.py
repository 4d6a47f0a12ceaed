"""Re-send pending dead letters to the API they were meant for, with their idempotency keys."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from tasks.api.dead_letters import plan_replay
from tasks.api.send import SendCounts, replay_letters
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


class ReplayResult(RequestCounts):
    """What one replay did, in dead letters: `replayed = succeeded + still_failing`."""

    replayed: int
    succeeded: int
    still_failing: int

    @classmethod
    def of(cls, totals: SendCounts, calls: CallSummary) -> ReplayResult:
        """The result of a replay that sent `totals` with the requests `calls`."""
        return cls(**totals.replayed(), **calls.request_counts())


@flow(name="replay-dead-letters", log_prints=True, task_runner=api_task_runner())
@with_run_timeout
@documents_http_parameters
def replay_dead_letters(
    *,
    base_url: str,
    flow_run_id: str | None = None,
    older_than_minutes: Annotated[float, Field(ge=0)] | None = None,
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
    timeout_seconds: RunTimeoutSeconds = 1 * HOUR,
) -> ReplayResult:
    """Re-send the pending letters of batchflows_dead_letters addressed to one API.

    Each goes to its own method and URL with its original payload, plain headers and
    Idempotency-Key, so an API that already applied it does not apply it twice. Delivered
    letters are marked replayed_at; the others stay pending with their new attempt count.

    Args:
        base_url: Root of the API whose letters are sent; letters addressed to any other
            origin stay pending (the credentials of auth_block go to this origin only).
        flow_run_id: Only the letters of this api-push flow run.
        older_than_minutes: Only letters created at least this many minutes ago.
        database: SQLAlchemy URL or SqlAlchemyConnector block name; default
            $BATCHFLOWS_DATABASE_URL, then sqlite:///data/batchflows.db.
        timeout_seconds: Time limit of the whole run (default 1 hour): past it the run
            ends Failed (TimedOut); letters not yet delivered stay pending for the next replay.
    """
    http = HttpOptions.of(
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
    plan = plan_replay(
        base_url=base_url,
        flow_run_id=flow_run_id,
        older_than_minutes=older_than_minutes,
        database=database,
    )
    caller = HttpCaller(http, base_url=base_url, name="replay-dead-letters")
    totals = replay_letters(caller, plan)
    return ReplayResult.of(totals, caller.summary())
