"""api-pull against a real loopback server, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.api_pull import api_pull
from samples.api_server import FakeApi, Reply, Seen, create_items_table, items, serve_elsewhere
from tasks.api.pagination import (
    CursorPagination,
    OffsetPagination,
    PagePagination,
    StartingAfterPagination,
)
from tasks.api.watermark import Incremental
from tasks.errors import ApiError, InputError, RateLimited
from tests.flows.api.helpers import UNREACHABLE, flow_arguments, rows
from tests.flows.helpers import OUTSIDE_A_FLOW_RUN

UPDATED = Incremental(field="updated_at", param="updated_at_gte")


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi({"items": items(300)}, limit_per_second=100).run() as server:
        yield server


def pull(api: FakeApi, database_url: str, **options: Any) -> Any:
    defaults = {"path": "/items", "table": "items", "page_size": 20, "max_concurrency": 5}
    return api_pull(**flow_arguments(api, database_url, **(defaults | options)))


def stored_ids(database_url: str) -> list[int]:
    return [row[0] for row in rows(database_url, "SELECT id FROM items ORDER BY id")]


def test_pull_stores_every_record_exactly_once(api: FakeApi, database_url: str) -> None:
    create_items_table(database_url)

    result = pull(api, database_url)

    assert stored_ids(database_url) == list(range(1, 301))
    assert (result.records, result.inserted, result.updated, result.pages) == (300, 300, 0, 15)
    assert (result.requests, result.retries) == (15, 0)


def test_the_server_never_sees_more_than_the_limit_in_any_second(database_url: str) -> None:
    create_items_table(database_url)
    # 60 requests at 30/s: two seconds at the limit, against a server in its own process
    # that answers 429 beyond 30 requests in any one-second window.
    with serve_elsewhere({"items": items(300)}, limit_per_second=30) as api:
        result = api_pull(
            **flow_arguments(
                api,
                database_url,
                path="/items",
                table="items",
                page_size=5,
                rate_limit_per_second=30,
            )
        )
        most, rejected = api.ask("max_in_any_second"), api.ask("rate_limited")

    assert (result.records, result.requests) == (300, 60)
    # The limit is exact, whatever the machine's load; speed is for bench/bench_api.py.
    assert most <= 30
    assert rejected == 0


def test_pull_fetches_pages_concurrently_but_never_more_than_max_concurrency(
    database_url: str,
) -> None:
    create_items_table(database_url)
    api = FakeApi({"items": items(300)})
    in_flight = [0, 0]  # now, most
    lock = threading.Lock()

    def count_in_flight(seen: Seen) -> Reply | None:
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
        time.sleep(0.1)
        with lock:
            in_flight[0] -= 1
        return None

    api.hooks.append(count_in_flight)
    with api.run():
        result = pull(api, database_url, max_concurrency=3)

    assert result.records == 300
    assert in_flight[1] == 3


def test_rerun_updates_only_records_that_changed(api: FakeApi, database_url: str) -> None:
    create_items_table(database_url)
    pull(api, database_url)
    api.collections["items"][6]["name"] = "renamed"

    result = pull(api, database_url)

    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 299)
    assert rows(database_url, "SELECT name FROM items WHERE id = 7") == [("renamed",)]


def test_incremental_second_run_asks_only_for_records_at_or_after_the_mark(
    api: FakeApi, database_url: str
) -> None:
    create_items_table(database_url)
    first = pull(api, database_url, incremental=UPDATED)
    mark = api.collections["items"][-1]["updated_at"]
    assert first.cursor == mark
    api.collections["items"].extend(items(30, start=301))
    api.seen.clear()

    second = pull(api, database_url, incremental=UPDATED)

    queries = [seen.query for seen in api.seen]
    assert queries[0]["updated_at_gte"] == mark
    assert all(query["updated_at_gte"] >= mark for query in queries)
    assert all(query["_sort"] == "updated_at" for query in queries)
    assert (second.records, second.inserted, second.unchanged) == (31, 30, 1)
    assert stored_ids(database_url) == list(range(1, 331))
    state = rows(database_url, "SELECT last_value, records FROM batchflows_sync_state")
    assert state == [(json.dumps(items(1, start=330)[0]["updated_at"]), 331)]


def test_crash_between_pages_resumes_at_the_stored_mark_without_loss(
    api: FakeApi, database_url: str
) -> None:
    create_items_table(database_url)
    broken = {"request": 4}

    def break_page_four(seen: Seen) -> Reply | None:
        if len(api.seen) == broken["request"]:
            return Reply(400, '{"error": "boom"}')
        return None

    api.hooks.append(break_page_four)
    with pytest.raises(ApiError, match="400"):
        pull(api, database_url, incremental=UPDATED)
    # Pages 1-3 committed with the mark of their last record; nothing after it. (Pages 2
    # and 3 start at the value that ended the page before, and drop that one record again.)
    assert stored_ids(database_url) == list(range(1, 59))
    mark = rows(database_url, "SELECT last_value FROM batchflows_sync_state")[0][0]
    assert json.loads(mark) == api.collections["items"][57]["updated_at"]

    broken["request"] = 0
    api.seen.clear()
    result = pull(api, database_url, incremental=UPDATED)

    assert api.seen[0].query["updated_at_gte"] == json.loads(mark)
    assert stored_ids(database_url) == list(range(1, 301))
    assert result.inserted == 242


@pytest.mark.parametrize(
    "pagination", [PagePagination(), OffsetPagination()], ids=["page", "offset"]
)
def test_records_that_change_during_an_incremental_pull_are_not_skipped(
    api: FakeApi, database_url: str, pagination: PagePagination | OffsetPagination
) -> None:
    """Record 5 is updated while page 2 is asked for: it moves to the end, and record 21
    moves up to where page 1 was. Paged by position, record 21 would be read by neither page
    and left below the mark for good; paged by value, every record is stored once."""
    create_items_table(database_url)
    moved = "2024-01-02T00:00:00"

    result = _pull_while_one_record_changes(api, database_url, pagination, 5, moved)

    assert result.cursor == moved
    assert all(seen.query["_sort"] == "updated_at" for seen in api.seen)


@pytest.mark.parametrize("moved", ["2024-01-02T00:00:00", "2024-01-01T00:00:26"])
@pytest.mark.parametrize(
    "pagination", [PagePagination(), OffsetPagination()], ids=["page", "offset"]
)
def test_a_record_sharing_the_value_that_ends_a_page_may_change_without_a_skip(
    api: FakeApi, database_url: str, pagination: PagePagination | OffsetPagination, moved: str
) -> None:
    """Records 15-25 share one `updated_at`; page 1 ends with six of them. Record 16 is
    updated before page 2 is asked for, to the end or to just after the shared value.
    Counting the six and skipping that many would start page 2 past record 21; dropping
    record 16 by its key alone would lose its update."""
    create_items_table(database_url)
    collection = api.collections["items"]
    for record in collection[14:25]:
        record["updated_at"] = collection[14]["updated_at"]

    _pull_while_one_record_changes(api, database_url, pagination, 16, moved)


def _pull_while_one_record_changes(
    api: FakeApi, database_url: str, pagination: Any, record_id: int, moved: str
) -> Any:
    """An incremental pull during which record `record_id` gets `moved` as its `updated_at`
    (when page 2 is asked for); every record is stored once, that one with its change."""

    def update(seen: Seen) -> None:
        if len(api.seen) == 2:
            api.collections["items"][record_id - 1] |= {"name": "changed", "updated_at": moved}

    api.hooks.append(update)

    result = pull(api, database_url, incremental=UPDATED, pagination=pagination)

    assert stored_ids(database_url) == list(range(1, 301))
    assert (result.records, result.inserted, result.updated) == (301, 300, 1)
    sql = "SELECT name, updated_at FROM items WHERE id = :id"
    assert rows(database_url, sql, id=record_id) == [("changed", moved)]
    return result


def test_an_api_that_ignores_the_sort_stops_an_incremental_pull_paged_by_value(
    api: FakeApi, database_url: str
) -> None:
    create_items_table(database_url)
    api.collections["items"].reverse()

    with pytest.raises(ApiError, match=r"page 1 .*not in ascending order of 'updated_at'"):
        pull(api, database_url, incremental=UPDATED.model_copy(update={"sort_param": "_x"}))

    assert stored_ids(database_url) == []


def test_pull_retries_503_and_429_and_counts_them(database_url: str) -> None:
    create_items_table(database_url)
    api = FakeApi({"items": items(100)})
    faults = [Reply(503, "down"), Reply(429, "{}", {"Retry-After": "0"}), Reply(503, "down")]

    def inject(seen: Seen) -> Reply | None:
        return faults.pop(0) if faults and seen.query.get("_page") == "2" else None

    api.hooks.append(inject)
    with api.run():
        result = pull(api, database_url)

    assert stored_ids(database_url) == list(range(1, 101))
    assert result.retries == 3
    assert result.rate_limited == 1


def test_pull_follows_cursors_in_an_envelope(sqlite_url: str) -> None:
    create_items_table(sqlite_url)
    cursor = CursorPagination(records_path="data", cursor_path="next_cursor")
    with FakeApi({"items": items(95)}, envelope=True).run() as api:
        result = pull(api, sqlite_url, pagination=cursor)

    assert stored_ids(sqlite_url) == list(range(1, 96))
    assert result.pages == 5
    assert result.cursor == "cursor=80"


def test_pull_asks_for_the_records_after_the_last_one_while_has_more(sqlite_url: str) -> None:
    create_items_table(sqlite_url)
    with FakeApi({"items": items(95)}).run() as api:
        result = pull(api, sqlite_url, pagination=StartingAfterPagination())

    assert stored_ids(sqlite_url) == list(range(1, 96))
    assert result.pages == 5
    asked = [seen.query.get("starting_after") for seen in api.seen]
    assert asked == [None, "20", "40", "60", "80"]
    assert all(seen.query["limit"] == "20" for seen in api.seen)


@pytest.mark.parametrize(
    "pagination",
    [
        {"type": "page", "page_param": "_page", "size_param": "_limit"},
        {"type": "offset", "offset_param": "_start", "cursor_param": "unused"},
        {"type": "starting_after"},
    ],
    ids=["page", "offset-with-a-field-of-another-type", "starting-after"],
)
def test_pagination_given_as_a_plain_dict_still_works(
    sqlite_url: str, pagination: dict[str, Any]
) -> None:
    create_items_table(sqlite_url)
    with FakeApi({"items": items(45)}).run() as api:
        result = pull(api, sqlite_url, pagination=pagination)

    assert stored_ids(sqlite_url) == list(range(1, 46))
    assert result.records == 45


def test_pull_pages_one_after_another_without_a_total(sqlite_url: str) -> None:
    create_items_table(sqlite_url)
    with FakeApi({"items": items(45)}, counts=False).run() as api:
        result = pull(api, sqlite_url)

    assert stored_ids(sqlite_url) == list(range(1, 46))
    assert result.pages == 3


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        (Reply(200, "<html>hi</html>", content_type="text/html"), ApiError, "not JSON"),
        (Reply(401, "{}"), ApiError, "401.*auth_block"),
        (Reply(429, "{}", {"Retry-After": "3600"}), RateLimited, "Retry-After 3600 s"),
        (Reply(200, '[{"name": "no id"}]'), InputError, "parameter 'key': record 1"),
    ],
    ids=["non-json-body", "unauthorized", "retry-after-an-hour", "record-without-key"],
)
def test_bad_answers_fail_fast_with_a_clear_error(
    sqlite_url: str, reply: Reply, error: type[Exception], message: str
) -> None:
    create_items_table(sqlite_url)
    api = FakeApi({"items": items(10)})
    api.hooks.append(lambda seen: reply)
    started = time.monotonic()
    with api.run(), pytest.raises(error, match=message):
        pull(api, sqlite_url)
    assert time.monotonic() - started < 10
    assert stored_ids(sqlite_url) == []


def test_missing_records_path_names_the_parameter(sqlite_url: str) -> None:
    create_items_table(sqlite_url)
    wrong = CursorPagination(records_path="results")
    with (
        FakeApi({"items": items(10)}, envelope=True).run() as api,
        pytest.raises(InputError, match=r"pagination.records_path.*'results'.*data"),
    ):
        pull(api, sqlite_url, pagination=wrong)


def test_unreachable_host_fails_after_its_retries(api: FakeApi, sqlite_url: str) -> None:
    create_items_table(sqlite_url)
    started = time.monotonic()
    with pytest.raises(ApiError, match=r"ConnectError.*after 3 attempts"):
        pull(api, sqlite_url, base_url=UNREACHABLE, max_retries=2)
    assert time.monotonic() - started < 10


def test_a_pull_shows_progress_and_a_summary_with_retries_429s_and_rate(
    api: FakeApi, sqlite_url: str
) -> None:
    create_items_table(sqlite_url)
    once = {"3": Reply(429, "{}")}
    api.hooks.append(lambda seen: once.pop(seen.query.get("_page", ""), None))

    state = pull(api, sqlite_url, return_state=True)

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    by_type = {artifact.type: artifact for artifact in artifacts}
    assert set(by_type) == {"progress", "markdown", "table"}
    assert by_type["progress"].data == 100.0
    summary = json.loads(str(by_type["table"].data))[0]
    assert (summary["records"], summary["retries"], summary["rate_limited"]) == (300, 1, 1)
    assert summary["requests_per_second"] > 0


def test_a_global_concurrency_limit_adds_a_budget_shared_across_runs(sqlite_url: str) -> None:
    # Few requests, one at a time: acquiring GCL slots from concurrent threads is slow here.
    create_items_table(sqlite_url)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="api-pull-test", limit=50, slot_decay_per_second=0.5)
        )

    with FakeApi({"items": items(60)}).run() as api:
        result = pull(api, sqlite_url, global_limit="api-pull-test", max_concurrency=1)

    assert result.records == 60
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("api-pull-test")
    assert limit.active_slots > 0


def test_an_unknown_global_limit_names_the_parameter(api: FakeApi, sqlite_url: str) -> None:
    create_items_table(sqlite_url)

    with pytest.raises(InputError, match=r"parameter 'global_limit'.*prefect gcl create"):
        pull(api, sqlite_url, global_limit="no-such-limit")


@OUTSIDE_A_FLOW_RUN
def test_the_flow_function_runs_directly_too(api: FakeApi, sqlite_url: str) -> None:
    create_items_table(sqlite_url)
    arguments = flow_arguments(api, sqlite_url, path="/items", table="items", page_size=50)

    result = api_pull.fn(**arguments)

    assert (result.records, result.pages) == (300, 6)
    assert stored_ids(sqlite_url) == list(range(1, 301))
