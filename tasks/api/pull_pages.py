"""Fetch the pages of a pull (concurrently when their number is known) and store them in order.

One task per page fetch: Prefect's ~10 ms per task is small next to a request. Fetches run
ahead of the writer in a bounded window (twice `max_concurrency` pages), so memory stays flat
however many pages there are, while writes follow page order: page k commits after page k-1,
with the high-water mark that covers pages 1..k. A crash between pages therefore leaves a mark
below every record not yet stored, and the next run resumes there.

The flow writes each page itself, retrying transient database errors, without a task run per
write: those doubled the pull's task runs, and the Prefect server, still recording their
states after the run ended, answered the next run's creation 503 on SQLite ("database is
locked"), which the client waits 2 s to retry. Measured on 5,000 records in 50 pages: a call
took 4.2-10.3 s with a task per write and 2.9-3.3 s without. The progress artifact counts
the pages written.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from tasks.api.idempotency import canonical_json
from tasks.api.pagination import Page, PageRequest, Record
from tasks.api.progress import ApiProgress
from tasks.api.pull_plan import PullPlan
from tasks.api.seek import value_seek
from tasks.api.upsert import SyncUpdate, UpsertCounts, upsert_page
from tasks.api.watermark import Incremental, Watermark, order_key
from tasks.common.retry import transient_attempts, transient_retries
from tasks.common.run_log import run_logger
from tasks.common.task_window import results_in_order
from tasks.db.engine import get_engine
from tasks.errors import ApiError, InputError
from tasks.http.caller import HttpCaller
from tasks.http.client import origin_of, same_origin
from tasks.http.redact import redact_url

WRITE_ATTEMPTS = 4


class Follows(Protocol):
    """What tells the request after a page: a pagination strategy, or paging by value."""

    def next(self, page: Page, page_size: int) -> PageRequest | None:
        """The request after `page`; None after the last page."""
        ...


class PageStream(NamedTuple):
    """The pages of a pull in order, each with whether it is the last; and how many there are."""

    total: int | None
    pages: Iterator[tuple[Page, bool]]


class PullTotals(BaseModel):
    """What a pull has stored so far."""

    pages: int = 0
    records: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    mark: str | None = None
    cursor: str | None = None
    ignored_fields: set[str] = Field(default_factory=set)

    def last_position(self) -> str | None:
        """Where the pull ended: the stored mark's value, else the last page's position."""
        mark = json.loads(self.mark) if self.mark else None
        return str(mark) if mark is not None else self.cursor

    def counts(self) -> dict[str, object]:
        """The counts shown in the progress and summary artifacts."""
        return self.model_dump(include={"pages", "records", "inserted", "updated", "unchanged"})


def fetch_one(caller: HttpCaller, plan: PullPlan, request: PageRequest) -> Page:
    """One page, its records checked to carry the key, less those the pull already holds."""
    response = caller.try_request("GET", request.full_url).unwrap()
    page = plan.pagination.read(request, response)
    key = plan.target.key
    for position, record in enumerate(page.records):
        missing = [name for name in key if record.get(name) is None]
        if missing:
            raise InputError(
                f"parameter 'key': record {position + 1} of {request.describe()} has no "
                f"{', '.join(map(repr, missing))} (its fields: {', '.join(sorted(record))})"
            )
    if request.known and plan.incremental is not None:
        page.records = _less_known(page.records, request, plan.incremental, key)
    return page


def _less_known(
    records: list[Record], request: PageRequest, incremental: Incremental, key: list[str]
) -> list[Record]:
    """`records` less those `request` knows are held: same key, still at the value asked for
    (one that changed since is new again)."""
    held = {canonical_json(known) for known in request.known}
    at = order_key(request.params[incremental.param])
    return [
        r
        for r in records
        if canonical_json([r.get(n) for n in key]) not in held
        or order_key(r.get(incremental.field)) != at
    ]


fetch_page = task(
    name="fetch-page",
    cache_policy=NO_CACHE,
    task_run_name="fetch-page-{request.number} [{request.position}]",
    **transient_retries(0),  # the caller retries HTTP failures; a page is fetched once
)(fetch_one)


def write_page(plan: PullPlan, page: Page, state: SyncUpdate) -> UpsertCounts:
    """Upsert the page's records with the sync state that covers them, in one transaction,
    tried up to `WRITE_ATTEMPTS` times while the database fails transiently."""
    retrying = transient_attempts(WRITE_ATTEMPTS)
    return retrying(upsert_page, get_engine(plan.database), plan.target, page.records, state)


def pull_pages(caller: HttpCaller, plan: PullPlan) -> PullTotals:
    """Fetch and store every page of the pull, showing progress; what was stored."""
    with ApiProgress("api-pull", "pages", caller) as progress:
        first = fetch_page(caller, plan, plan.first)
        stream = pages_in_order(caller, plan, first)
        progress.total = stream.total
        totals = store_pages(plan, stream.pages, progress)
        progress.finish(totals.pages, totals.counts())
    return totals


def pages_in_order(caller: HttpCaller, plan: PullPlan, first: Page) -> PageStream:
    """Every page after `first`, in order: fetched concurrently if their number is known,
    else one after another (always so for incremental pulls paged by value).

    The known requests are made lazily, and never more than `max_pages`: an API announcing
    a hundred billion records stops the run before a second request is even built.
    """
    seek = value_seek(plan.pagination, plan.incremental, plan.target.key)
    if seek is not None:
        return PageStream(None, _one_after_another(caller, plan, first, seek))
    planned = plan.pagination.planned(first, plan.page_size)
    if planned is None:
        return PageStream(None, _one_after_another(caller, plan, first, plan.pagination))
    count, requests = planned
    if count > plan.max_pages:
        raise _too_many(plan, f"the API announces {count:,} pages")
    ahead = 2 * caller.options.max_concurrency
    parameters = ({"caller": caller, "plan": plan, "request": r} for r in requests)
    later = results_in_order(fetch_page, parameters, ahead)
    pages = itertools.chain([first], later)
    return PageStream(count, ((page, page.request.index == count - 1) for page in pages))


def _one_after_another(
    caller: HttpCaller, plan: PullPlan, page: Page, paging: Follows
) -> Iterator[tuple[Page, bool]]:
    """Pages following each other; stops an API that loops or leaves home."""
    asked = {page.request.full_url}
    while True:
        request = paging.next(page, plan.page_size)
        yield page, request is None
        if request is None:
            return
        check_next(plan, page, request, asked)
        asked.add(request.full_url)
        page = fetch_page(caller, plan, request)


def check_next(plan: PullPlan, page: Page, request: PageRequest, asked: set[str]) -> None:
    """Refuse a next request that leaves the API's origin, repeats one, or passes max_pages."""
    url = request.full_url
    if not same_origin(url, plan.first.url):
        raise ApiError(
            f"{page.request.describe()} points to {redact_url(url)}, another origin than "
            f"{origin_of(redact_url(plan.first.url))}: not followed (credentials and requests "
            "stay with base_url)"
        )
    if url in asked:
        raise ApiError(
            f"{page.request.describe()} points to {redact_url(url)} again: the pagination "
            "loops (a next link or cursor that does not advance); stopped"
        )
    if request.number > plan.max_pages:
        raise _too_many(plan, "the API keeps announcing a next page")


def _too_many(plan: PullPlan, why: str) -> InputError:
    return InputError(
        f"parameter 'max_pages': {why}, more than max_pages={plan.max_pages:,}; raise max_pages "
        "if the collection really is that large, or check 'pagination'"
    )


def _keys(plan: PullPlan, page: Page) -> list[list[object]]:
    return [[record.get(name) for name in plan.target.key] for record in page.records]


def store_pages(
    plan: PullPlan, pages: Iterable[tuple[Page, bool]], progress: ApiProgress
) -> PullTotals:
    """Write each page, in order, with the mark and cursor that cover it.

    A page holding exactly the records of the page before stops the run: the API ignores the
    pagination parameters, and would otherwise be read up to `max_pages` times over.
    """
    totals = PullTotals(mark=plan.stored_mark)
    incremental = plan.incremental
    watermark = Watermark(incremental.field, plan.stored_mark) if incremental else None
    previous: Page | None = None
    for page, is_last in pages:
        if previous is not None and page.records and _keys(plan, page) == _keys(plan, previous):
            raise ApiError(
                f"{page.request.describe()} holds the same records as "
                f"{previous.request.describe()}: the API ignores the pagination parameters; "
                "check 'pagination'"
            )
        previous = page
        mark = None
        if watermark is not None:
            watermark.observe(page.records, page.request.describe())
            mark = watermark.to_store(is_last)
        cursor = page.request.position
        state = SyncUpdate(
            source=plan.state_key, last_value=mark, cursor=cursor, records=len(page.records)
        )
        counts = write_page(plan, page, state)
        totals.pages += 1
        totals.records += counts.records
        totals.inserted += counts.inserted
        totals.updated += counts.updated
        totals.unchanged += counts.unchanged
        totals.mark = mark or totals.mark
        totals.cursor = cursor
        _warn_ignored(plan, page, totals)
        progress.update(totals.pages, totals.counts())
    return totals


def _warn_ignored(plan: PullPlan, page: Page, totals: PullTotals) -> None:
    new = plan.target.ignored_fields(page.records) - totals.ignored_fields
    if new:
        totals.ignored_fields |= new
        run_logger().warning(
            "%s: fields %s are not columns of %s and are not stored",
            page.request.describe(),
            ", ".join(sorted(new)),
            plan.target.table.display_name,
        )
