"""The dead-letter table: requests that failed for good, kept to be replayed.

A push's failed delivery becomes a pending letter (payload, record key, idempotency key, last
status, error, response excerpt, attempts). At most one letter is pending per idempotency key:
a rerun that fails again adds its attempts to the same letter. A replay marks a delivered
letter `replayed_at` and gives a failing one its new attempt count and last error. A later
push that delivers a record (one per request) settles that record's pending letters too,
`replayed_at` set and the reason in `error`: replaying them would send an older version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from tasks.api.delivery import Delivery, Outcome
from tasks.common.retry import transient_attempts, transient_retries
from tasks.common.run_log import run_logger
from tasks.db.bookkeeping import dead_letters, ensure_bookkeeping
from tasks.db.engine import backend_of, get_engine
from tasks.db.errors import database_errors
from tasks.http.client import endpoint, origin_of

READ_BATCH = 500
SETTLE_ATTEMPTS = 4
PLAN_RETRIES = 3


def settle(engine: Engine, outcomes: Sequence[Outcome], flow_run_id: str | None) -> int:
    """Record a group's outcomes in one transaction; the records newly dead-lettered.

    The requests are already sent, so only this transaction is retried when the database
    fails transiently (a deadlock, a busy SQLite), never the sending.
    """
    ensure_bookkeeping(engine)
    now = dt.datetime.now(dt.UTC)
    pushed = [o for o in outcomes if o.delivery.dead_letter_id is None]
    failed = [o for o in pushed if not o.delivered]
    delivered = [o.delivery for o in pushed if o.delivered and o.delivery.records == 1]
    for attempt in transient_attempts(SETTLE_ATTEMPTS):
        with attempt, database_errors("batchflows_dead_letters"), engine.begin() as conn:
            if delivered:
                conn.execute(_superseded(delivered, flow_run_id, now))
            if failed:
                conn.execute(_insert_letters(engine, failed, flow_run_id, now))
            for outcome in outcomes:
                letter = outcome.delivery.dead_letter_id
                if letter is not None:
                    conn.execute(_replayed(letter, outcome, now))
    return sum(o.delivery.records for o in failed)


def _failure(outcome: Outcome) -> dict[str, Any]:
    return {
        "status_code": outcome.status,
        "error": outcome.error or "failed",
        "response_excerpt": outcome.excerpt,
    }


def _superseded(
    delivered: Sequence[Delivery], flow_run_id: str | None, now: dt.datetime
) -> sa.Executable:
    """Settle the pending letters of records this push just delivered."""
    c = dead_letters.c
    by = f"push run {flow_run_id}" if flow_run_id else "a later push"
    return (
        sa.update(dead_letters)
        .where(
            c.replayed_at.is_(None),
            c.method.in_({d.method for d in delivered}),
            c.url.in_({d.url for d in delivered}),
            c.record_key.in_([d.record_key for d in delivered]),
        )
        .values(replayed_at=now, error=f"superseded: delivered again by {by}")
    )


def _insert_letters(
    engine: Engine, failed: Sequence[Outcome], flow_run_id: str | None, now: dt.datetime
) -> sa.Executable:
    # Identical rows of a query share an idempotency key: one letter for them (an upsert may
    # not touch one row twice), their attempts added up.
    rows: dict[str, dict[str, Any]] = {}
    for o in failed:
        key = o.delivery.idempotency_key
        earlier = rows[key]["attempts"] if key in rows else 0
        rows[key] = {
            "flow_run_id": flow_run_id,
            "method": o.delivery.method,
            "url": o.delivery.url,
            "idempotency_key": key,
            "record_key": o.delivery.record_key,
            "payload": o.delivery.payload,
            "headers": o.delivery.headers,
            "attempts": earlier + o.attempts,
            "created_at": now,
            "last_attempt_at": now,
            **_failure(o),
        }
    insert = postgresql.insert if backend_of(engine) == "postgresql" else sqlite.insert
    statement = insert(dead_letters).values(list(rows.values()))
    return statement.on_conflict_do_update(
        index_elements=[dead_letters.c.idempotency_key],
        index_where=dead_letters.c.replayed_at.is_(None),
        set_={
            "attempts": dead_letters.c.attempts + statement.excluded.attempts,
            "flow_run_id": statement.excluded.flow_run_id,
            "status_code": statement.excluded.status_code,
            "error": statement.excluded.error,
            "response_excerpt": statement.excluded.response_excerpt,
            "last_attempt_at": statement.excluded.last_attempt_at,
        },
    )


def _replayed(letter: int, outcome: Outcome, now: dt.datetime) -> sa.Executable:
    changes: dict[str, Any] = {
        "attempts": dead_letters.c.attempts + outcome.attempts,
        "last_attempt_at": now,
    }
    changes |= {"replayed_at": now} if outcome.delivered else _failure(outcome)
    return sa.update(dead_letters).where(dead_letters.c.id == letter).values(changes)


class ReplayPlan(BaseModel):
    """Which pending letters a replay sends: those of the configured origin, up to an id."""

    database: str | None
    origin: str
    flow_run_id: str | None
    older_than_minutes: float | None
    total: int
    up_to_id: int
    other_origins: int

    def condition(self) -> sa.ColumnElement[bool]:
        """The letters to replay, in SQL (pending, selected, addressed to `origin`)."""
        return pending_filter(self.flow_run_id, self.older_than_minutes) & _to_origin(self.origin)


def make_replay_plan(
    *,
    base_url: str,
    flow_run_id: str | None,
    older_than_minutes: float | None,
    database: str | None,
) -> ReplayPlan:
    """Count the pending letters addressed to `base_url`'s origin; say how many are not."""
    origin = origin_of(endpoint(base_url, ""))
    engine = get_engine(database)
    selected = pending_filter(flow_run_id, older_than_minutes)
    total, up_to_id = count_pending(engine, selected & _to_origin(origin))
    everywhere, _ = count_pending(engine, selected)
    if everywhere > total:
        run_logger().warning(
            "%d pending dead letters are addressed to other origins than %s and are not sent; "
            "replay them with their own base_url",
            everywhere - total,
            origin,
        )
    return ReplayPlan(
        database=database,
        origin=origin,
        flow_run_id=flow_run_id,
        older_than_minutes=older_than_minutes,
        total=total,
        up_to_id=up_to_id,
        other_origins=everywhere - total,
    )


plan_replay = task(name="plan-replay", cache_policy=NO_CACHE, **transient_retries(PLAN_RETRIES))(
    make_replay_plan
)


def _to_origin(origin: str) -> sa.ColumnElement[bool]:
    return dead_letters.c.url.startswith(origin + "/", autoescape=True)


def pending_filter(
    flow_run_id: str | None, older_than_minutes: float | None
) -> sa.ColumnElement[bool]:
    """Pending letters, of one push run and older than some minutes if asked."""
    condition: sa.ColumnElement[bool] = dead_letters.c.replayed_at.is_(None)
    if flow_run_id:
        condition &= dead_letters.c.flow_run_id == flow_run_id
    if older_than_minutes is not None:
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=older_than_minutes)
        condition &= dead_letters.c.created_at <= cutoff
    return condition


def count_pending(engine: Engine, condition: sa.ColumnElement[bool]) -> tuple[int, int]:
    """(how many letters match, the highest id among them) at this moment."""
    ensure_bookkeeping(engine)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.max(dead_letters.c.id), 0)).where(
                condition
            )
        ).one()
    return int(row[0]), int(row[1])


def pending_deliveries(plan: ReplayPlan) -> Iterator[Delivery]:
    """The letters the plan selects, as deliveries, read in id order.

    A letter whose URL is not on the plan's origin (checked again here, parsed) is skipped:
    the run's credentials go to that origin only.
    """
    engine = get_engine(plan.database)
    condition, up_to_id = plan.condition(), plan.up_to_id
    after = 0
    while True:
        with engine.connect() as conn:
            batch = conn.execute(
                sa.select(dead_letters)
                .where(condition, dead_letters.c.id > after, dead_letters.c.id <= up_to_id)
                .order_by(dead_letters.c.id)
                .limit(READ_BATCH)
            ).all()
        for row in batch:
            if origin_of(row.url) != plan.origin:
                continue
            payload = row.payload
            yield Delivery(
                method=row.method,
                url=row.url,
                idempotency_key=row.idempotency_key,
                record_key=row.record_key,
                payload=payload,
                headers=row.headers or {},
                records=len(payload) if isinstance(payload, list) else 1,
                dead_letter_id=row.id,
            )
        if len(batch) < READ_BATCH:
            return
        after = batch[-1].id
