"""API faults: a dead API, a connection dropped mid-body, a trickling server, a foreign redirect.

Each test states the fault, the expected outcome, and checks the data exactly afterwards. The
API is the loopback fake (samples/api_server.py); nothing leaves the machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from flows.api_pull import api_pull
from flows.api_push import api_push
from flows.replay_dead_letters import replay_dead_letters
from samples.api_server import FakeApi, Reply, Seen, create_items_table, items
from tasks.api.watermark import Incremental
from tasks.db.bookkeeping import ensure_bookkeeping
from tasks.db.engine import get_engine
from tasks.errors import ApiError

FAST: dict[str, Any] = {"backoff_seconds": 0.01, "rate_limit_per_second": 100}
UPDATED = Incremental(field="updated_at", param="updated_at_gte")


@pytest.fixture(autouse=True, scope="module")
def prefect_api() -> Iterator[None]:
    with (
        prefect_test_harness(server_startup_timeout=60),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


def rows(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = get_engine(database_url)
    ensure_bookkeeping(engine)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql))]


def create_outbox(database_url: str, count: int) -> None:
    metadata = sa.MetaData()
    outbox = sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text),
    )
    engine = get_engine(database_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(outbox.insert(), [{"id": i, "name": f"n{i}"} for i in range(1, count + 1)])


def always(status: int) -> Any:
    def hook(seen: Seen) -> Reply:
        del seen
        return Reply(status, '{"error": "down"}')

    return hook


def test_a_push_to_a_dead_api_dead_letters_everything_fast_and_replay_delivers_it(
    sqlite_url: str,
) -> None:
    """Fault: every request answered 503. Outcome: within a minute, 20 dead letters, few
    requests (the open circuit sends nothing); once the API is back, replay delivers all 20."""
    create_outbox(sqlite_url, 20)
    with FakeApi().run() as api:
        api.hooks.append(always(503))
        started = time.monotonic()
        pushed = api_push(
            base_url=api.url,
            path="/outbox",
            table="outbox",
            key=["id"],
            database=sqlite_url,
            rate_limit_per_second=100,
        )
        seconds = time.monotonic() - started
        sent_while_dead = len(api.seen)

        api.hooks.clear()
        replayed = replay_dead_letters(base_url=api.url, database=sqlite_url, **FAST)

    assert seconds < 60
    assert (pushed.sent, pushed.succeeded, pushed.dead_lettered) == (20, 0, 20)
    assert sent_while_dead == 5  # the first record's attempts until the circuit opened
    errors = [row[0] for row in rows(sqlite_url, "SELECT error FROM batchflows_dead_letters")]
    reason = "circuit open after 5 consecutive failures, last status 503"
    assert sum(reason in error for error in errors) == 20
    assert (replayed.replayed, replayed.succeeded, replayed.still_failing) == (20, 20, 0)
    assert sorted(record["id"] for record in api.stored["outbox"]) == list(range(1, 21))
    pending = rows(
        sqlite_url, "SELECT count(*) FROM batchflows_dead_letters WHERE replayed_at IS NULL"
    )
    assert pending == [(0,)]


def test_a_pull_from_a_dead_api_fails_with_the_reason_and_keeps_its_watermark(
    sqlite_url: str,
) -> None:
    """Fault: the API dies after the first run. Outcome: the second run fails fast naming the
    open circuit; the table and the stored mark are exactly those of the first run."""
    create_items_table(sqlite_url)
    arguments = {
        "path": "/items",
        "table": "items",
        "key": ["id"],
        "page_size": 10,
        "incremental": UPDATED,
        "database": sqlite_url,
        "breaker_failures": 3,
        **FAST,
    }
    with FakeApi({"items": items(30)}).run() as api:
        api_pull(base_url=api.url, **arguments)
        mark = rows(sqlite_url, "SELECT last_value FROM batchflows_sync_state")
        api.hooks.append(always(503))
        api.seen.clear()

        with pytest.raises(
            ApiError, match="circuit open after 3 consecutive failures, last status 503"
        ):
            api_pull(base_url=api.url, **arguments)

    assert len(api.seen) == 3
    assert rows(sqlite_url, "SELECT last_value FROM batchflows_sync_state") == mark
    assert rows(sqlite_url, "SELECT count(*) FROM items") == [(30,)]


def test_a_connection_dropped_mid_body_is_retried_and_nothing_is_lost(sqlite_url: str) -> None:
    """Fault: page 2's first answer announces its body and closes the connection halfway.
    Outcome: that request is retried, every record stored once, one retry counted."""
    create_items_table(sqlite_url)
    cut = {"2": Reply(200, '[{"id": 11}, {"id": 12}]', cut_after=7)}
    with FakeApi({"items": items(30)}).run() as api:
        api.hooks.append(lambda seen: cut.pop(seen.query.get("_page", ""), None))
        result = api_pull(
            base_url=api.url,
            path="/items",
            table="items",
            key=["id"],
            page_size=10,
            database=sqlite_url,
            **FAST,
        )

    assert (result.records, result.retries) == (30, 1)
    assert rows(sqlite_url, "SELECT count(*), min(id), max(id) FROM items") == [(30, 1, 30)]


def test_a_trickling_api_times_out_instead_of_holding_the_run(sqlite_url: str) -> None:
    """Fault: the API sends its body one byte every 0.3 s (a 2 KB page would take 10 min).
    Outcome: each attempt ends at request_timeout_seconds; the run fails in seconds; nothing
    is stored and no mark is written."""
    create_items_table(sqlite_url)
    body = "[" + " " * 2000 + "]"
    with FakeApi({"items": items(5)}).run() as api:
        api.hooks.append(lambda seen: Reply(200, body, trickle_seconds=0.3))
        started = time.monotonic()
        with pytest.raises(ApiError, match=r"ReadTimeout.*request_timeout_seconds=1"):
            api_pull(
                base_url=api.url,
                path="/items",
                table="items",
                key=["id"],
                database=sqlite_url,
                request_timeout_seconds=1.0,
                max_retries=1,
                **FAST,
            )
        seconds = time.monotonic() - started

    assert seconds < 20
    assert len(api.seen) == 2
    assert rows(sqlite_url, "SELECT count(*) FROM items") == [(0,)]
    assert rows(sqlite_url, "SELECT count(*) FROM batchflows_sync_state") == [(0,)]


def test_a_redirect_to_another_host_is_refused_by_pull_and_push(sqlite_url: str) -> None:
    """Fault: the API redirects every request to another host. Outcome: the pull fails naming
    the refused redirect, the push dead-letters its records with the reason, and the other host
    receives nothing."""
    create_items_table(sqlite_url)
    create_outbox(sqlite_url, 3)
    with FakeApi({"items": items(5)}).run() as other, FakeApi().run() as api:
        moved = f"{other.url}/items"
        api.hooks.append(lambda seen: Reply(302, "", {"Location": moved}))
        common = {"base_url": api.url, "key": ["id"], "database": sqlite_url, **FAST}
        with pytest.raises(ApiError, match="another origin is not followed"):
            api_pull(path="/items", table="items", **common)
        pushed = api_push(path="/outbox", table="outbox", **common)

    assert other.seen == []
    assert rows(sqlite_url, "SELECT count(*) FROM items") == [(0,)]
    assert (pushed.succeeded, pushed.dead_lettered) == (0, 3)
    statuses = rows(sqlite_url, "SELECT status_code FROM batchflows_dead_letters")
    assert statuses == [(302,), (302,), (302,)]
