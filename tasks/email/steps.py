"""The campaign's steps as Prefect tasks (thin wrappers), and running its batches.

A batch task that fails on a transient database error is retried; it asks the ledger first,
so a retry never resends a recipient its earlier try already delivered.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.common.retry import transient_retries
from tasks.common.task_window import results_as_finished
from tasks.email.campaign import (
    BatchCounts,
    Campaign,
    Plan,
    Recipient,
    plan_recipients,
    read_recipients,
    send_batch,
)


@task(name="plan-campaign", cache_policy=NO_CACHE, **transient_retries(3))
def plan_campaign(
    campaign: Campaign, table: str | None, query: str | None, flow_run_id: str | None
) -> Plan:
    """Read the recipients, record them in the ledger and keep those to send now."""
    rows = read_recipients(campaign.database, table, query)
    return plan_recipients(campaign, rows, flow_run_id)


@task(
    name="send-batch",
    task_run_name="send-batch-{index}",
    cache_policy=NO_CACHE,
    **transient_retries(3),
)
def send_email_batch(campaign: Campaign, index: int, batch: list[Recipient]) -> BatchCounts:
    """Deliver one batch of recipients over one SMTP connection."""
    del index  # names the task run only
    return send_batch(campaign, batch)


def batches(
    recipients: Sequence[Recipient], size: int, stagger: int = 1
) -> Iterator[list[Recipient]]:
    """`recipients` in lists of `size`, but the first `stagger` lists grow from `size /
    stagger` to `size`.

    Batches sent side by side share the rate limit evenly, so batches that start together
    end together, and then every connection stops at once to start its next task: the
    campaign stalls for a moment at each such wave. Staggered first batches end one after
    another, and so do all the batches after them.
    """
    it = iter(recipients)
    for number in itertools.count(1):
        batch = list(itertools.islice(it, max(1, -(-size * min(number, stagger) // stagger))))
        if not batch:
            return
        yield batch


def send_all(
    campaign: Campaign,
    plan: Plan,
    batch_size: int,
    concurrency: int,
    on_batch: Callable[[BatchCounts], None],
) -> BatchCounts:
    """Every batch of the plan, `concurrency` at once, the next one started as soon as any
    ends; `on_batch` sees the running totals."""
    totals = BatchCounts()
    parameters: Iterator[dict[str, Any]] = (
        {"campaign": campaign, "index": index, "batch": batch}
        for index, batch in enumerate(batches(plan.todo, batch_size, stagger=concurrency))
    )
    for counts in results_as_finished(send_email_batch, parameters, concurrency):
        totals += counts
        on_batch(totals)
    return totals
