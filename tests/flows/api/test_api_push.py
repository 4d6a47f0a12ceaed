"""api-push and replay-dead-letters against a real loopback server, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from prefect.blocks.system import Secret
from prefect.exceptions import ParameterTypeError

from flows.api_push import api_push
from flows.replay_dead_letters import replay_dead_letters
from samples.api_server import FakeApi, Reply, Seen
from tasks.db.bookkeeping import dead_letters, ensure_bookkeeping
from tasks.db.engine import get_engine
from tasks.errors import ApiError, InputError
from tests.flows.api.helpers import FAST, UNREACHABLE, flow_arguments, rows
from tests.flows.helpers import OUTSIDE_A_FLOW_RUN

TOKEN = "Bearer s3cret"
CREATED = dt.datetime(2024, 5, 1, 12, 0, 0)


def create_outbox(database_url: str, count: int) -> None:
    """A source table of `count` rows with a numeric and a timestamp column."""
    metadata = sa.MetaData()
    outbox = sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text),
        sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("created", sa.DateTime),
    )
    engine = get_engine(database_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            outbox.insert(),
            [
                {"id": i, "name": f"n{i}", "amount": i + 0.5, "created": CREATED}
                for i in range(1, count + 1)
            ],
        )


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi(limit_per_second=100).run() as server:
        yield server


def push(api: FakeApi, database_url: str, **options: Any) -> Any:
    defaults = {"path": "/outbox", "table": "outbox", "max_concurrency": 4}
    return api_push(**flow_arguments(api, database_url, **(defaults | options)))


def stored_ids(api: FakeApi) -> list[int]:
    return sorted(record["id"] for record in api.stored.get("outbox", []))


def letters(database_url: str) -> list[tuple[Any, ...]]:
    """(record_key, status_code, attempts, replayed) of every dead letter, oldest first."""
    c = dead_letters.c
    query = sa.select(c.record_key, c.status_code, c.attempts, c.replayed_at.is_not(None))
    engine = get_engine(database_url)
    ensure_bookkeeping(engine)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query.order_by(c.id))]


def test_push_delivers_each_record_once_despite_lost_answers(
    api: FakeApi, database_url: str
) -> None:
    create_outbox(database_url, 60)
    lost = {"count": 0}

    def lose_some_answers(seen: Seen) -> Reply | None:
        if seen.method == "POST" and lost["count"] < 6 and api.answers:
            lost["count"] += 1
            return Reply(503, "answer lost", after_processing=True)
        return None

    api.hooks.append(lose_some_answers)
    # Six lost answers in a row would open a 5-failure circuit (then records fail fast).
    result = push(api, database_url, breaker_failures=10)

    assert (result.sent, result.succeeded, result.dead_lettered) == (60, 60, 0)
    assert stored_ids(api) == list(range(1, 61))
    assert result.retries == 6
    sends = Counter(s.idempotency_key for s in api.seen)
    assert (len(sends), sum(sends.values())) == (60, 66)
    first = next(r for r in api.stored["outbox"] if r["id"] == 1)
    assert (first["name"], first["amount"]) == ("n1", 1.5)
    assert first["created"].startswith("2024-05-01")


def test_rerun_sends_the_same_keys_and_nothing_is_applied_twice(
    api: FakeApi, database_url: str
) -> None:
    create_outbox(database_url, 20)
    push(api, database_url)
    first_keys = {s.idempotency_key for s in api.seen}

    push(api, database_url)

    assert {s.idempotency_key for s in api.seen} == first_keys
    assert len(first_keys) == 20
    assert stored_ids(api) == list(range(1, 21))


def test_rejected_records_become_dead_letters_and_replay_delivers_them(
    database_url: str,
) -> None:
    create_outbox(database_url, 12)
    Secret(value=TOKEN).save("test-api-token", overwrite=True)
    with FakeApi(token=TOKEN).run() as api:
        pushed = push(api, database_url)
        assert (pushed.sent, pushed.succeeded, pushed.dead_lettered) == (12, 0, 12)
        assert letters(database_url)[0] == ([1], 401, 1, False)
        keys = {s.idempotency_key for s in api.seen}

        replayed = replay_dead_letters(
            base_url=api.url,
            auth_block="test-api-token",
            database=database_url,
            rate_limit_per_second=100,
        )

    assert (replayed.replayed, replayed.succeeded, replayed.still_failing) == (12, 12, 0)
    assert stored_ids(api) == list(range(1, 13))
    assert {s.idempotency_key for s in api.seen} == keys
    assert all(letter[2:] == (2, True) for letter in letters(database_url))


def refuse_ids(ids: set[int], status: int, headers: dict[str, str] | None = None) -> Any:
    """A hook answering `status` to every request for a record whose id is in `ids`."""

    def hook(seen: Seen) -> Reply | None:
        body = seen.body if isinstance(seen.body, dict) else {}
        return (
            Reply(status, '{"error": "refused"}', headers or {}) if body.get("id") in ids else None
        )

    return hook


def test_replay_keeps_what_still_fails_with_its_new_attempt_count(
    api: FakeApi, database_url: str
) -> None:
    create_outbox(database_url, 6)
    api.hooks.append(refuse_ids({1, 2, 3, 4, 5, 6}, 400))
    push(api, database_url)
    api.hooks[:] = [refuse_ids({2, 5}, 422)]

    result = replay_dead_letters(
        base_url=api.url, database=database_url, rate_limit_per_second=100, **FAST
    )

    assert (result.replayed, result.succeeded, result.still_failing) == (6, 4, 2)
    assert stored_ids(api) == [1, 3, 4, 6]
    pending = [letter for letter in letters(database_url) if not letter[3]]
    assert pending == [([2], 422, 2, False), ([5], 422, 2, False)]


def test_a_rerun_that_fails_again_updates_its_dead_letter_instead_of_adding_one(
    api: FakeApi, sqlite_url: str
) -> None:
    create_outbox(sqlite_url, 3)
    api.hooks.append(refuse_ids({2}, 400))
    push(api, sqlite_url)

    second = push(api, sqlite_url)

    assert (second.sent, second.succeeded, second.dead_lettered) == (3, 2, 1)
    assert letters(sqlite_url) == [([2], 400, 2, False)]


def test_a_letter_whose_record_a_later_push_delivered_is_settled_not_replayed(
    api: FakeApi, database_url: str
) -> None:
    create_outbox(database_url, 3)
    api.hooks.append(refuse_ids({2}, 400))
    push(api, database_url)
    with get_engine(database_url).begin() as conn:
        conn.execute(sa.text("UPDATE outbox SET name = 'newer' WHERE id = 2"))
    api.hooks.clear()

    second = push(api, database_url)
    replayed = replay_dead_letters(
        base_url=api.url, database=database_url, rate_limit_per_second=100, **FAST
    )

    assert (second.sent, second.succeeded, second.dead_lettered) == (3, 3, 0)
    assert replayed.replayed == 0
    assert [r["name"] for r in api.stored["outbox"] if r["id"] == 2] == ["newer"]
    assert letters(database_url) == [([2], 400, 1, True)]


def test_retry_after_an_hour_dead_letters_the_record_instead_of_hanging(
    api: FakeApi, sqlite_url: str
) -> None:
    create_outbox(sqlite_url, 5)
    api.hooks.append(refuse_ids({3}, 429, {"Retry-After": "3600"}))
    started = time.monotonic()

    result = push(api, sqlite_url)

    assert time.monotonic() - started < 10
    assert (result.sent, result.succeeded, result.dead_lettered) == (5, 4, 1)
    error = rows(sqlite_url, "SELECT error FROM batchflows_dead_letters")[0][0]
    assert "Retry-After 3600 s, more than max_retry_after=60 s" in error


def test_server_errors_retried_until_exhausted_become_dead_letters(
    api: FakeApi, sqlite_url: str
) -> None:
    create_outbox(sqlite_url, 4)
    api.hooks.append(refuse_ids({4}, 503))

    result = push(api, sqlite_url, max_retries=2)

    assert (result.sent, result.succeeded, result.dead_lettered) == (4, 3, 1)
    assert letters(sqlite_url) == [([4], 503, 3, False)]


def test_an_unreachable_host_stops_the_push_instead_of_dead_lettering_everything(
    api: FakeApi, sqlite_url: str
) -> None:
    create_outbox(sqlite_url, 30)
    started = time.monotonic()

    with pytest.raises(ApiError, match=r"ConnectError.*host is reachable"):
        push(api, sqlite_url, base_url=UNREACHABLE, max_retries=1)

    assert time.monotonic() - started < 10
    assert letters(sqlite_url) == []


def test_a_group_held_up_does_not_hold_back_the_groups_after_it(
    api: FakeApi, sqlite_url: str
) -> None:
    create_outbox(sqlite_url, 100)  # four groups of 25 requests
    held, others_sent = threading.Event(), threading.Event()
    released: list[bool] = []

    def hold_the_first_request(seen: Seen) -> Reply | None:
        if seen.method != "POST":
            return None
        if not held.is_set():
            held.set()
            released.append(others_sent.wait(timeout=10))
        elif len(api.arrivals("POST")) >= 76:  # every group but the held one's rest
            others_sent.set()
        return None

    api.hooks.append(hold_the_first_request)
    result = push(api, sqlite_url, max_concurrency=2)

    assert released == [True]
    assert (result.sent, result.succeeded) == (100, 100)
    assert stored_ids(api) == list(range(1, 101))


def test_batches_send_lists_under_one_key_each(api: FakeApi, database_url: str) -> None:
    create_outbox(database_url, 25)

    result = push(api, database_url, batch_size=10)

    assert (result.sent, result.succeeded, result.requests) == (25, 25, 3)
    assert [len(batch) for batch in api.stored["outbox"]] == [10, 10, 5]
    assert len({s.idempotency_key for s in api.seen}) == 3


def test_identical_failing_rows_of_a_query_share_one_dead_letter(
    api: FakeApi, database_url: str
) -> None:
    create_outbox(database_url, 3)
    api.hooks.append(refuse_ids({2}, 400))

    result = push(
        api,
        database_url,
        table=None,
        query="SELECT id, name FROM outbox UNION ALL SELECT id, name FROM outbox WHERE id = 2",
    )

    assert (result.sent, result.succeeded, result.dead_lettered) == (4, 2, 2)
    assert letters(database_url) == [([2], 400, 2, False)]


def test_put_goes_to_the_url_named_by_the_record(api: FakeApi, sqlite_url: str) -> None:
    create_outbox(sqlite_url, 3)

    push(api, sqlite_url, path="/outbox/{id}", method="PUT")

    assert sorted(s.path for s in api.seen) == ["/outbox/1", "/outbox/2", "/outbox/3"]
    assert {s.method for s in api.seen} == {"PUT"}


def test_push_sends_the_rows_of_a_query(api: FakeApi, database_url: str) -> None:
    create_outbox(database_url, 10)

    result = push(
        api, database_url, table=None, query="SELECT id, name FROM outbox WHERE id > 7 ORDER BY id"
    )

    assert result.sent == 3
    assert api.stored["outbox"] == [
        {"id": 8, "name": "n8"},
        {"id": 9, "name": "n9"},
        {"id": 10, "name": "n10"},
    ]


def test_replay_selects_by_flow_run_and_by_age(api: FakeApi, sqlite_url: str) -> None:
    create_outbox(sqlite_url, 2)
    api.hooks.append(refuse_ids({1, 2}, 400))
    push(api, sqlite_url)
    api.hooks.clear()

    too_recent = replay_dead_letters(base_url=api.url, database=sqlite_url, older_than_minutes=60)
    other_run = replay_dead_letters(
        base_url=api.url, database=sqlite_url, flow_run_id="no-such-run"
    )

    assert too_recent.replayed == other_run.replayed == 0
    run_id = rows(sqlite_url, "SELECT DISTINCT flow_run_id FROM batchflows_dead_letters")[0][0]
    assert (
        replay_dead_letters(base_url=api.url, database=sqlite_url, flow_run_id=run_id).succeeded
        == 2
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"query": "SELECT 1 AS id"}, "give exactly one of them"),
        ({"key": ["nope"]}, "parameter 'key': the table outbox has no column 'nope'"),
        ({"headers": {"Authorization": "x"}}, "parameter 'headers': Authorization"),
        ({"batch_size": 5, "path": "/outbox/{id}"}, "only works with batch_size=1"),
        (
            {"table": None, "query": "DELETE FROM outbox RETURNING id"},
            "parameter 'query': only a read-only SELECT",
        ),
        (
            {"table": None, "query": "SELECT id FROM outbox; DROP TABLE outbox"},
            "parameter 'query': only one statement is allowed",
        ),
    ],
    ids=[
        "table-and-query",
        "unknown-key",
        "secret-header",
        "field-path-in-batch",
        "writing-query",
        "two-statements",
    ],
)
def test_bad_parameters_are_refused_before_sending(
    api: FakeApi, sqlite_url: str, options: dict[str, Any], message: str
) -> None:
    create_outbox(sqlite_url, 1)
    with pytest.raises(InputError, match=re.escape(message)):
        push(api, sqlite_url, **options)
    assert api.seen == []


def test_out_of_range_parameters_are_refused_before_the_run(api: FakeApi, sqlite_url: str) -> None:
    create_outbox(sqlite_url, 1)
    with pytest.raises(ParameterTypeError, match="max_concurrency"):
        push(api, sqlite_url, max_concurrency=0)
    assert api.seen == []


@OUTSIDE_A_FLOW_RUN
def test_the_flow_functions_run_directly_too(api: FakeApi, sqlite_url: str) -> None:
    create_outbox(sqlite_url, 30)
    api.hooks.append(refuse_ids({7}, 400))
    arguments = flow_arguments(api, sqlite_url, path="/outbox", table="outbox")

    pushed = api_push.fn(**arguments)
    api.hooks.clear()
    replayed = replay_dead_letters.fn(base_url=api.url, database=sqlite_url, **FAST)

    assert (pushed.sent, pushed.succeeded, pushed.dead_lettered) == (30, 29, 1)
    assert (replayed.replayed, replayed.succeeded) == (1, 1)
    assert stored_ids(api) == list(range(1, 31))
