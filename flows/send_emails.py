"""Send a templated e-mail to every recipient of a table or query, rate limited, exactly once."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from tasks.common.deadline import HOUR, RunTimeoutSeconds, with_run_timeout
from tasks.common.limiter import RateLimiter
from tasks.common.progress import RunProgress
from tasks.db.engine import get_engine
from tasks.email import (
    BatchCounts,
    Campaign,
    failures,
    load_template,
    normalize_address,
    plan_campaign,
    resolve_smtp,
    send_all,
)
from tasks.http.options import api_task_runner


class EmailResult(BaseModel):
    """What one run did; `total = sent + failed + skipped + duplicates`."""

    campaign_id: str
    total: int
    sent: int
    failed: int
    skipped: int
    duplicates: int
    seconds: float


@flow(name="send-emails", log_prints=True, task_runner=api_task_runner())
@with_run_timeout
def send_emails(
    *,
    template: str | dict[str, str],
    table: str | None = None,
    query: str | None = None,
    context: dict[str, Any] | None = None,
    campaign_id: Annotated[str | None, Field(max_length=128)] = None,
    from_address: str = "batchflows@localhost.localdomain",
    rate_limit_per_second: Annotated[float, Field(gt=0, le=10_000)] = 10.0,
    max_concurrency: Annotated[int, Field(ge=1, le=16)] = 2,
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100,
    retry_failed: bool = False,
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 5,
    backoff_seconds: Annotated[float, Field(ge=0, le=60)] = 0.5,
    smtp: str | None = None,
    database: str | None = None,
    timeout_seconds: RunTimeoutSeconds = 4 * HOUR,
) -> EmailResult:
    """Send `template` to every address of `table` or `query`, once per campaign and recipient.

    Args:
        template: A template name under templates/email/ (subject.txt, body.html, body.txt)
            or an inline {"subject", "html", "text"}; Jinja2, sandboxed, HTML autoescaped.
        table: Table of recipients (optionally schema.table) with an `email` column; the
            other columns are each recipient's template variables.
        query: Or a read-only SELECT giving an `email` column (and template variables).
        context: Variables shared by every recipient's template.
        campaign_id: Names the campaign in the ledger; default the flow run id. Rerun with
            the same id to resume: recipients already sent are never sent again.
        from_address: The sender address (From and the envelope).
        rate_limit_per_second: Messages started per second at most, retries included.
        max_concurrency: Batches sent at once, each over its own SMTP connection.
        batch_size: Recipients per batch (one task, one connection); the first batches
            are smaller, so that batches end one after another.
        retry_failed: Also send again to recipients that failed in an earlier run.
        max_attempts: Attempts per recipient for transient answers (4xx, dropped
            connections); 5xx answers and invalid addresses fail at once.
        backoff_seconds: First pause between attempts; doubles each time, with jitter.
        smtp: smtp://host:port URL (smtp+starttls://, smtps://, user:password@ allowed) or
            the name of a saved EmailServerCredentials block; default $BATCHFLOWS_SMTP_URL.
        database: SQLAlchemy URL or SqlAlchemyConnector block name (recipients and ledger);
            default $BATCHFLOWS_DATABASE_URL, then sqlite:///data/batchflows.db.
        timeout_seconds: Time limit of the whole run (default 4 hours): past it the run
            ends Failed (TimedOut); recipients sent so far are in the ledger, and a
            rerun with the same campaign_id sends only the rest.
    """
    started = time.monotonic()
    run_id = flow_run.get_id()
    campaign = Campaign(
        campaign_id=campaign_id or run_id or str(uuid.uuid4()),
        sender=normalize_address(from_address, "parameter 'from_address'"),
        server=resolve_smtp(smtp),
        template=load_template(template),
        database=database,
        limiter=RateLimiter(rate_limit_per_second, max_concurrency),
        context=context or {},
        retry_failed=retry_failed,
        max_attempts=max_attempts,
        backoff_seconds=backoff_seconds,
    )
    plan = plan_campaign(campaign, table, query, run_id)
    with RunProgress(
        f"Sending campaign {campaign.campaign_id}", f"e-mails to {len(plan.todo)} recipients"
    ) as progress:

        def show(done: BatchCounts) -> None:
            finished = done.sent + done.failed + done.skipped
            percent = 100.0 * finished / len(plan.todo) if plan.todo else 100.0
            progress.update(percent, {**done.model_dump(), "to send": len(plan.todo)})

        counts = send_all(campaign, plan, batch_size, max_concurrency, show)
        result = EmailResult(
            campaign_id=campaign.campaign_id,
            total=plan.total,
            sent=counts.sent,
            failed=counts.failed + plan.invalid,
            skipped=plan.skipped + counts.skipped,
            duplicates=plan.duplicates,
            seconds=round(time.monotonic() - started, 3),
        )
        summary = result.model_dump()
        progress.update(
            100.0, {**counts.model_dump(), "to send": len(plan.todo)}, force=True, summary=summary
        )
        progress.table(f"send-emails-{campaign.campaign_id}", [summary], "campaign summary")
        failed = failures(get_engine(database), campaign.campaign_id)
        if failed:
            progress.table(
                f"send-emails-{campaign.campaign_id}-failures",
                failed,
                "failed recipients (first 20)",
            )
    return result
