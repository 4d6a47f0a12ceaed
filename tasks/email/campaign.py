"""An e-mail campaign's plain functions: plan who gets what, then deliver batch by batch.

Planning reads the recipients (a table or a read-only query with an `email` column), drops
repeated addresses, records every recipient in the ledger, and keeps those not yet sent.
Delivery sends each through one reused SMTP connection per batch, every attempt under the
run's rate limiter, and writes the outcome to the ledger as soon as the server answers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Engine

from tasks.common.limiter import RateLimiter
from tasks.db.engine import get_engine
from tasks.db.select import Statement, fetch_all, table_select
from tasks.email import ledger
from tasks.email.address import InvalidAddress, normalize_address
from tasks.email.message import Attachment, build_message, message_id, smtp_bytes
from tasks.email.smtp import Answer, SmtpServer, SmtpSession
from tasks.email.template import EmailTemplate
from tasks.errors import InputError

EMAIL_COLUMN = "email"
MAX_BACKOFF_SECONDS = 30.0


class Recipient(BaseModel):
    """One address and the values its template sees."""

    address: str
    context: dict[str, Any]


class BatchCounts(BaseModel):
    """What one batch did."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    attempts: int = 0

    def __add__(self, other: BatchCounts) -> BatchCounts:
        return BatchCounts(**{k: v + getattr(other, k) for k, v in self})


@dataclass
class Campaign:
    """Everything a batch needs to deliver: shared by the run's concurrent batches."""

    campaign_id: str
    sender: str
    server: SmtpServer
    template: EmailTemplate
    database: str | None
    limiter: RateLimiter
    context: Mapping[str, Any] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    retry_failed: bool = False
    max_attempts: int = 5
    backoff_seconds: float = 0.5

    def compose(self, recipient: Recipient) -> bytes:
        """The message for `recipient` (InputError if its template or headers are refused)."""
        rendered = self.template.render(
            {**self.context, **recipient.context, EMAIL_COLUMN: recipient.address}
        )
        message = build_message(
            sender=self.sender,
            recipient=recipient.address,
            rendered=rendered,
            msg_id=message_id(self.campaign_id, recipient.address, self.sender),
            campaign_id=self.campaign_id,
            attachments=self.attachments,
        )
        return smtp_bytes(message)


@dataclass
class Plan:
    """The recipients to send to now, and how the list counted."""

    todo: list[Recipient]
    total: int
    duplicates: int
    invalid: int
    skipped: int


def read_recipients(
    database: str | None, table: str | None, query: str | None
) -> list[dict[str, Any]]:
    """The recipient rows of `table` or `query` (exactly one), read in a read-only session."""
    if (table is None) == (query is None):
        raise InputError("give exactly one of the parameters 'table' and 'query'")
    engine = get_engine(database)
    sql = table_select(engine, table) if table is not None else str(query)
    (rows,) = fetch_all(engine, [Statement("parameter 'query'" if query else "table", sql)], {})
    if EMAIL_COLUMN not in rows.columns:
        raise InputError(
            f"the recipients have no {EMAIL_COLUMN!r} column (columns: {rows.columns}); "
            f"select the address AS {EMAIL_COLUMN}"
        )
    return rows.dicts()


def plan_recipients(
    campaign: Campaign, rows: Sequence[Mapping[str, Any]], flow_run_id: str | None
) -> Plan:
    """Record every recipient in the ledger and keep those to send now (nothing sent yet)."""
    unique: dict[str, Recipient] = {}
    invalid: dict[str, str] = {}
    invalid_rows = 0
    for number, row in enumerate(rows, start=1):
        raw = row.get(EMAIL_COLUMN)
        try:
            address = normalize_address(raw, f"recipient {number}")
        except InvalidAddress as exc:
            invalid_rows += 1
            invalid.setdefault(str(raw).strip()[:320], str(exc))
            continue
        if address not in unique:
            context = {k: v for k, v in row.items() if k != EMAIL_COLUMN}
            unique[address] = Recipient(address=address, context=context)
    if unique:
        campaign.compose(next(iter(unique.values())))  # a template error stops the run here
    engine = get_engine(campaign.database)
    pending = (
        {
            "recipient": address,
            "message_id": message_id(campaign.campaign_id, address, campaign.sender),
            "status": "pending",
        }
        for address in unique
    )
    ledger.register(engine, campaign.campaign_id, pending, flow_run_id)
    refused = (
        {"recipient": raw, "message_id": "", "status": "failed", "error": error}
        for raw, error in invalid.items()
    )
    ledger.register(engine, campaign.campaign_id, refused, flow_run_id)
    status = ledger.statuses(engine, campaign.campaign_id)
    wanted = {"pending", "sending", "failed"} if campaign.retry_failed else {"pending", "sending"}
    todo = [r for address, r in unique.items() if status.get(address) in wanted]
    return Plan(
        todo=todo,
        total=len(rows),
        duplicates=len(rows) - len(unique) - invalid_rows,
        invalid=invalid_rows,
        skipped=len(unique) - len(todo),
    )


def send_batch(campaign: Campaign, batch: Sequence[Recipient]) -> BatchCounts:
    """Deliver `batch` over one SMTP connection; a recipient already sent is never resent."""
    engine = get_engine(campaign.database)
    allowed = ledger.still_to_send(
        engine, campaign.campaign_id, [r.address for r in batch], campaign.retry_failed
    )
    counts = BatchCounts(skipped=len(batch) - len(allowed))
    ledger.mark_sending(engine, campaign.campaign_id, sorted(allowed))
    with SmtpSession(campaign.server) as session:
        for recipient in batch:
            if recipient.address in allowed:
                counts += deliver(campaign, engine, session, recipient)
    return counts


def deliver(
    campaign: Campaign, engine: Engine, session: SmtpSession, recipient: Recipient
) -> BatchCounts:
    """Send one message, retrying transient answers with backoff; the ledger tells the end."""
    cid, address = campaign.campaign_id, recipient.address
    try:
        message = campaign.compose(recipient)
    except InputError as exc:
        ledger.mark_failed(engine, cid, address, code=None, error=str(exc), attempts=0)
        return BatchCounts(failed=1)
    code: int | None = None
    reason = ""
    for attempt in range(1, campaign.max_attempts + 1):
        answer = session.connect() or _send(campaign, session, message, address)
        if answer.kind == "accepted":
            ledger.mark_sent(engine, cid, address, answer.code or 250, attempt)
            return BatchCounts(sent=1, attempts=attempt)
        code, reason = answer.code, answer.reason
        if answer.kind == "permanent":
            ledger.mark_failed(engine, cid, address, code=code, error=reason, attempts=attempt)
            return BatchCounts(failed=1, attempts=attempt)
        if attempt < campaign.max_attempts:
            time.sleep(backoff(campaign.backoff_seconds, attempt))
    error = f"still failing after {campaign.max_attempts} attempts: {reason}"
    ledger.mark_failed(engine, cid, address, code=code, error=error, attempts=campaign.max_attempts)
    return BatchCounts(failed=1, attempts=campaign.max_attempts)


def _send(campaign: Campaign, session: SmtpSession, message: bytes, address: str) -> Answer:
    with campaign.limiter.slot():
        return session.send(message, campaign.sender, address)


def backoff(base: float, attempt: int, draw: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter on the upper half: base * 2^(n-1) * [0.5, 1)."""
    return float(min(MAX_BACKOFF_SECONDS, base * 2 ** (attempt - 1)) * (0.5 + draw() / 2))
