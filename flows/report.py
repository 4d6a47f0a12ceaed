"""Generate a report (HTML, PDF or CSV, with charts) from read-only queries, and mail it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from tasks.common.deadline import MINUTE, RunTimeoutSeconds, with_run_timeout
from tasks.common.progress import RunProgress
from tasks.reports import (
    Format,
    Mailed,
    gather_data,
    generate,
    mail_report_task,
    plan_report,
    process,
)


class ReportResult(BaseModel):
    """The published report file; cleanup removes it after `expires_at`."""

    path: str
    format: str
    bytes: int
    sha256: str
    expires_at: datetime
    rows: int
    emailed: Mailed | None
    seconds: float


STEPS = ("gathering_data", "processing", "generating")


@flow(name="report", log_prints=True)
@with_run_timeout
def report(
    *,
    name: Annotated[str | None, Field(max_length=64)] = None,
    query: str | None = None,
    title: str | None = None,
    filters: dict[str, Any] | None = None,
    format: Format = "html",
    destination: str = "reports",
    filename: str | None = None,
    expires_in_hours: Annotated[int, Field(ge=0, le=24 * 366)] = 168,
    email_to: list[str] | None = None,
    from_address: str = "batchflows@localhost.localdomain",
    smtp: str | None = None,
    database: str | None = None,
    timeout_seconds: RunTimeoutSeconds = 30 * MINUTE,
) -> ReportResult:
    """Run a report's read-only queries, render it as HTML, PDF or CSV, publish it to expire.

    Args:
        name: A report defined in reports/<name>.yaml (give this or query).
        query: Or one read-only SELECT to report on; `:name` placeholders take `filters`.
        title: Title of an ad-hoc query report.
        filters: Values of the report's filters, bound as parameters (never pasted into SQL);
            a report with a period also takes period_hours.
        format: html (one self-contained page), pdf (that page printed by WeasyPrint) or csv
            (the main query's rows).
        destination: Directory under the exports root ($BATCHFLOWS_EXPORTS_ROOT, default
            ./data) where the file goes; it may not lead outside that root.
        filename: File name; default report-<name>_<UTC timestamp>_<random>.<format>.
        expires_in_hours: Hours until the cleanup flow deletes the file.
        email_to: Addresses to mail the file to, as an attachment (once each).
        from_address: Sender of that e-mail.
        smtp: smtp:// URL or EmailServerCredentials block name; default $BATCHFLOWS_SMTP_URL.
        database: SQLAlchemy URL or SqlAlchemyConnector block name; default
            $BATCHFLOWS_DATABASE_URL, then sqlite:///data/batchflows.db.
        timeout_seconds: Time limit of the whole run (default 30 minutes): past it the run
            ends Failed (TimedOut); no file, final or temporary, is left behind.
    """
    started = time.monotonic()
    now = datetime.now(UTC)
    definition, values = plan_report(
        name=name,
        query=query,
        title=title,
        filters=filters or {},
        destination=destination,
        filename=filename,
        email_to=email_to,
        smtp=smtp,
    )
    with RunProgress(
        f"Report {definition.title}", f"report {definition.name} ({format})"
    ) as progress:

        def step(index: int) -> None:
            status = {"step": STEPS[index], "of": " → ".join(STEPS)}
            progress.update(100.0 * index / len(STEPS), status, force=True)

        step(0)
        gathered = gather_data(definition, values, database)
        step(1)
        page = process(gathered, now)
        step(2)
        expires_at = now + timedelta(hours=expires_in_hours)
        published, rows = generate(
            format=format,
            page=page,
            gathered=gathered,
            destination=destination,
            filename=filename,
            now=now,
            expires_at=expires_at,
            database=database,
            flow_run_id=flow_run.get_id(),
        )
        emailed = None
        if email_to:
            emailed = mail_report_task(
                published,
                email_to,
                title=definition.title,
                generated_at=page.generated_at,
                expires_at=expires_at.isoformat(),
                smtp=smtp,
                from_address=from_address,
                database=database,
                flow_run_id=flow_run.get_id(),
            )
        result = ReportResult(
            path=published.path,
            format=format,
            bytes=published.bytes,
            sha256=published.sha256,
            expires_at=expires_at,
            rows=rows,
            emailed=emailed,
            seconds=round(time.monotonic() - started, 3),
        )
        summary = result.model_dump(exclude={"emailed"}, mode="json")
        progress.update(100.0, {"step": "done"}, force=True, summary=summary)
        progress.link(
            f"report-{definition.name}",
            f"file://{published.path}",
            f"{definition.title} ({format}, {published.bytes:,} bytes)",
            f"expires {expires_at:%Y-%m-%d %H:%M} UTC; sha256 {published.sha256}",
        )
    return result
