"""Mailing a finished report as an attachment, through the campaign path of send-emails.

The campaign id is derived from the file's checksum, so a retried mailing of the same file is
the same campaign in the ledger and reaches each recipient once.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from tasks.common.limiter import RateLimiter
from tasks.email.address import normalize_address
from tasks.email.campaign import Campaign, plan_recipients, send_batch
from tasks.email.message import Attachment
from tasks.email.smtp import resolve_smtp
from tasks.email.template import load_template
from tasks.exports.files import Published

REPORT_TEMPLATE = "report"
RATE_PER_SECOND = 5.0


class Mailed(BaseModel):
    """Who got the report."""

    campaign_id: str
    sent: int
    failed: int
    skipped: int


def mail_report(
    published: Published,
    recipients: list[str],
    *,
    title: str,
    generated_at: str,
    expires_at: str,
    smtp: str | None,
    from_address: str,
    database: str | None,
    flow_run_id: str | None,
) -> Mailed:
    """Send the report file to `recipients`, once each, recorded in batchflows_emails."""
    path = Path(published.path)
    campaign = Campaign(
        campaign_id=f"report-{published.sha256[:32]}",
        sender=normalize_address(from_address, "parameter 'from_address'"),
        server=resolve_smtp(smtp),
        template=load_template(REPORT_TEMPLATE),
        database=database,
        limiter=RateLimiter(RATE_PER_SECOND, 1),
        context={
            "title": title,
            "generated_at": generated_at,
            "filename": path.name,
            "bytes": published.bytes,
            "sha256": published.sha256,
            "expires_at": expires_at,
        },
        attachments=(Attachment(path.name, path.read_bytes()),),
    )
    plan = plan_recipients(campaign, [{"email": r} for r in recipients], flow_run_id)
    counts = send_batch(campaign, plan.todo)
    return Mailed(
        campaign_id=campaign.campaign_id,
        sent=counts.sent,
        failed=counts.failed + plan.invalid,
        skipped=plan.skipped + counts.skipped,
    )
