"""Send requests (pushes or replays) in groups, and settle each group's outcome in the database.

A `Delivery` is one request: a record, or a batch of records, with its deterministic
`Idempotency-Key`. A group of deliveries is one task: they are sent one after another through
the run's shared `HttpCaller` (the run's concurrency comes from several groups at once), then
settled in one transaction (`tasks.api.dead_letters`): failures become dead letters, replayed
letters are marked delivered or keep their new attempt count. Every record sent is counted as
delivered or dead-lettered, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from tasks.api.dead_letters import ReplayPlan, pending_deliveries, settle
from tasks.api.delivery import Delivery, Outcome
from tasks.api.progress import ApiProgress
from tasks.api.push_source import PushPlan, stream_rows
from tasks.common.retry import transient_retries
from tasks.common.task_window import results_as_finished
from tasks.db.engine import get_engine
from tasks.http.caller import HttpCaller

REQUESTS_PER_GROUP = 25


class DeliveryGroup(BaseModel):
    """The deliveries one task sends; groups are numbered from 1."""

    number: int
    deliveries: list[Delivery]


class SendCounts(BaseModel):
    """What a run's requests did, in requests and in records."""

    requests: int = 0
    delivered: int = 0
    records: int = 0
    records_delivered: int = 0
    records_dead_lettered: int = 0

    def pushed(self) -> dict[str, int]:
        """A push's counts, in records: `sent = succeeded + dead_lettered`."""
        return {
            "sent": self.records,
            "succeeded": self.records_delivered,
            "failed": self.records - self.records_delivered,
            "dead_lettered": self.records_dead_lettered,
        }

    def replayed(self) -> dict[str, int]:
        """A replay's counts, in dead letters (each one request)."""
        return {
            "replayed": self.requests,
            "succeeded": self.delivered,
            "still_failing": self.requests - self.delivered,
        }

    def __add__(self, other: SendCounts) -> SendCounts:
        return SendCounts(
            **{name: getattr(self, name) + getattr(other, name) for name in SendCounts.model_fields}
        )


def deliver(caller: HttpCaller, delivery: Delivery) -> Outcome:
    """Send one delivery with its idempotency key, retried as the run's policy allows.

    A failure becomes an outcome to dead-letter, except when the API has not answered a single
    request of this run (unreachable host, wrong base_url): then the run stops with that error
    rather than dead-lettering every record; the rows stay in their table, unsent.
    """
    attempt = caller.try_request(
        delivery.method,
        delivery.url,
        json_body=delivery.payload,
        headers={**delivery.headers, "Idempotency-Key": delivery.idempotency_key},
    )
    if attempt.error is None:
        return Outcome(delivery=delivery, delivered=True, attempts=attempt.attempts)
    if attempt.error.status is None and not caller.stats.answers:
        raise attempt.error
    return Outcome(
        delivery=delivery,
        delivered=False,
        attempts=attempt.attempts,
        status=attempt.error.status,
        error=str(attempt.error),
        excerpt=attempt.error.body or None,
    )


def send_and_settle(
    caller: HttpCaller, group: DeliveryGroup, database: str | None, flow_run_id: str | None
) -> SendCounts:
    """Send a group, then record its failures and replays in one transaction."""
    outcomes = [deliver(caller, delivery) for delivery in group.deliveries]
    dead_lettered = settle(get_engine(database), outcomes, flow_run_id)
    delivered = [o for o in outcomes if o.delivered]
    return SendCounts(
        requests=len(outcomes),
        delivered=len(delivered),
        records=sum(o.delivery.records for o in outcomes),
        records_delivered=sum(o.delivery.records for o in delivered),
        records_dead_lettered=dead_lettered,
    )


send_group = task(
    name="send-group",
    cache_policy=NO_CACHE,
    task_run_name="send-group-{group.number}",
    **transient_retries(0),  # sent requests are never re-sent; `settle` retries its writes
)(send_and_settle)


def groups_of(deliveries: Iterable[Delivery], size: int) -> Iterator[DeliveryGroup]:
    """Consecutive groups of `size` deliveries."""
    group: list[Delivery] = []
    number = 1
    for delivery in deliveries:
        group.append(delivery)
        if len(group) == size:
            yield DeliveryGroup(number=number, deliveries=group)
            group, number = [], number + 1
    if group:
        yield DeliveryGroup(number=number, deliveries=group)


def send_all(
    caller: HttpCaller,
    groups: Iterable[DeliveryGroup],
    *,
    database: str | None,
    flow_run_id: str | None,
    progress: ApiProgress,
    view: Callable[[SendCounts], dict[str, int]],
) -> SendCounts:
    """Send every group, `max_concurrency` groups at once; the summed counts.

    A group that ends early makes room for the next at once, so one held back by retries
    and `Retry-After` waits does not stall the others. The progress shows `view` of the
    counts so far; its first entry is what it counts done.
    """
    totals = SendCounts()
    shared = {"caller": caller, "database": database, "flow_run_id": flow_run_id}
    parameters = (shared | {"group": group} for group in groups)
    for counts in results_as_finished(send_group, parameters, caller.options.max_concurrency):
        totals += counts
        shown = view(totals)
        progress.update(next(iter(shown.values())), shown)
    return totals


def push_rows(caller: HttpCaller, plan: PushPlan, flow_run_id: str | None) -> SendCounts:
    """Send every row the push plan selects, dead-lettering what fails; the counts."""
    with ApiProgress("api-push", "records", caller) as progress:
        progress.total = plan.total
        deliveries = plan.deliveries(stream_rows(get_engine(plan.database), plan.sql))
        totals = send_all(
            caller,
            groups_of(deliveries, REQUESTS_PER_GROUP),
            database=plan.database,
            flow_run_id=flow_run_id,
            progress=progress,
            view=SendCounts.pushed,
        )
        progress.finish(totals.records, totals.pushed())
    return totals


def replay_letters(caller: HttpCaller, plan: ReplayPlan) -> SendCounts:
    """Re-send the letters the replay plan selects; the counts."""
    with ApiProgress("replay-dead-letters", "letters", caller) as progress:
        progress.total = plan.total
        totals = send_all(
            caller,
            groups_of(pending_deliveries(plan), REQUESTS_PER_GROUP),
            database=plan.database,
            flow_run_id=plan.flow_run_id,
            progress=progress,
            view=SendCounts.replayed,
        )
        progress.finish(totals.requests, totals.replayed())
    return totals
