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
from tasks.common.task_window import results_in_order
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


def batches(recipients: Sequence[Recipient], size: int) -> Iterator[list[Recipient]]:
    """`recipients` in lists of `size`."""
    it = iter(recipients)
    while batch := list(itertools.islice(it, size)):
        yield batch


def send_all(
    campaign: Campaign,
    plan: Plan,
    batch_size: int,
    concurrency: int,
    on_batch: Callable[[BatchCounts], None],
) -> BatchCounts:
    """Every batch of the plan, `concurrency` at once; `on_batch` sees the running totals."""
    totals = BatchCounts()
    parameters: Iterator[dict[str, Any]] = (
        {"campaign": campaign, "index": index, "batch": batch}
        for index, batch in enumerate(batches(plan.todo, batch_size))
    )
    for counts in results_in_order(send_email_batch, parameters, concurrency):
        totals += counts
        on_batch(totals)
    return totals
