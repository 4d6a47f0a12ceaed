"""The `batchflows_emails` ledger: one row per (campaign, recipient), the record of what is done.

A recipient's row goes `pending` -> `sending` (when its batch starts) -> `sent` (right
after the server accepts) or `failed` (with the SMTP code and reason). A rerun with the same
campaign id sends `pending` and `sending` rows (and `failed` ones when asked) and never a
`sent` one. Writes are short transactions, retried when the database fails transiently.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from tasks.common.retry import is_transient
from tasks.db.bookkeeping import emails, ensure_bookkeeping
from tasks.db.engine import backend_of
from tasks.db.errors import database_errors

Status = Literal["pending", "sending", "sent", "failed"]
INSERT_BATCH = 1_000
WRITE_ATTEMPTS = 5
T = TypeVar("T")


def _retrying(action: Callable[[], T]) -> T:
    retrying = Retrying(
        stop=stop_after_attempt(WRITE_ATTEMPTS),
        wait=wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.05),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )
    for attempt in retrying:
        with attempt, database_errors("batchflows_emails"):
            return action()
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


def register(
    engine: Engine,
    campaign_id: str,
    rows: Iterable[dict[str, Any]],
    flow_run_id: str | None,
) -> None:
    """Add recipients (`recipient`, `message_id`, `status`, `error`) not yet in the ledger."""
    ensure_bookkeeping(engine)
    insert = postgresql.insert if backend_of(engine) == "postgresql" else sqlite.insert
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        statement = insert(emails).on_conflict_do_nothing(
            index_elements=[emails.c.campaign_id, emails.c.recipient]
        )
        values = [
            {"campaign_id": campaign_id, "flow_run_id": flow_run_id, "attempts": 0, **row}
            for row in batch
        ]
        with engine.begin() as conn:
            conn.execute(statement, values)

    for row in rows:
        batch.append(row)
        if len(batch) == INSERT_BATCH:
            _retrying(flush)
            batch.clear()
    if batch:
        _retrying(flush)


def statuses(engine: Engine, campaign_id: str) -> dict[str, Status]:
    """recipient -> status, for every recipient of the campaign."""
    ensure_bookkeeping(engine)
    query = sa.select(emails.c.recipient, emails.c.status).where(
        emails.c.campaign_id == campaign_id
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return {str(recipient): status for recipient, status in rows}


def _outcome(**values: Any) -> sa.Update:
    """One recipient's row set to its outcome: built once, so the per-message write (hundreds
    a second) skips building the statement and its cache key."""
    return (
        emails.update()
        .where(
            emails.c.campaign_id == sa.bindparam("campaign"),
            emails.c.recipient == sa.bindparam("address"),
        )
        .values(
            status=sa.bindparam("outcome"),
            smtp_code=sa.bindparam("code"),
            error=sa.bindparam("reason"),
            attempts=emails.c.attempts + sa.bindparam("tries"),
            updated_at=sa.bindparam("at"),
            **values,
        )
    )


_SENT = _outcome(sent_at=sa.bindparam("at"))
_FAILED = _outcome()


def _update(engine: Engine, statement: sa.Update, parameters: dict[str, Any]) -> None:
    def run() -> None:
        with engine.begin() as conn:
            conn.execute(statement, {"at": dt.datetime.now(dt.UTC), **parameters})

    _retrying(run)


def mark_sending(engine: Engine, campaign_id: str, recipients: Sequence[str]) -> None:
    """A batch starts: its recipients are `sending` until each is marked sent or failed.

    After a crash, `sending` rows are exactly those a resume must try again; of them, at most
    the one message in flight on each connection may have reached the server already.
    """
    statement = (
        emails.update()
        .where(
            emails.c.campaign_id == campaign_id,
            emails.c.recipient.in_(list(recipients)),
            emails.c.status != "sent",
        )
        .values(status="sending", updated_at=dt.datetime.now(dt.UTC))
    )

    def run() -> None:
        with engine.begin() as conn:
            conn.execute(statement)

    _retrying(run)


def mark_sent(engine: Engine, campaign_id: str, recipient: str, code: int, attempts: int) -> None:
    """The server accepted the message after `attempts` attempts."""
    _update(
        engine,
        _SENT,
        {
            "campaign": campaign_id,
            "address": recipient,
            "outcome": "sent",
            "code": code,
            "reason": None,
            "tries": attempts,
        },
    )


def mark_failed(
    engine: Engine,
    campaign_id: str,
    recipient: str,
    *,
    code: int | None,
    error: str,
    attempts: int,
) -> None:
    """The recipient failed for now (replayable with `retry_failed`) after `attempts`."""
    _update(
        engine,
        _FAILED,
        {
            "campaign": campaign_id,
            "address": recipient,
            "outcome": "failed",
            "code": code,
            "reason": error[:2000],
            "tries": attempts,
        },
    )


def failures(engine: Engine, campaign_id: str, limit: int = 20) -> Sequence[dict[str, Any]]:
    """The first failed recipients of a campaign with their code and reason."""
    query = (
        sa.select(emails.c.recipient, emails.c.smtp_code, emails.c.error, emails.c.attempts)
        .where(emails.c.campaign_id == campaign_id, emails.c.status == "failed")
        .order_by(emails.c.recipient)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def still_to_send(
    engine: Engine, campaign_id: str, recipients: Sequence[str], retry_failed: bool
) -> set[str]:
    """Those of `recipients` a send may (re)try now: never one already marked sent."""
    wanted: tuple[str, ...] = (
        ("pending", "sending", "failed")
        if retry_failed
        else (
            "pending",
            "sending",
        )
    )
    query = sa.select(emails.c.recipient).where(
        emails.c.campaign_id == campaign_id,
        emails.c.recipient.in_(list(recipients)),
        emails.c.status.in_(wanted),
    )
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())
