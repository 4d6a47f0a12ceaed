"""The API flows given hostile parameters and hostile answers (issue: contain untrusted input).

Each test states the attack as its input and checks exactly what was written, sent or leaked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from prefect.blocks.system import Secret

from flows.api_pull import api_pull
from flows.api_push import api_push
from flows.replay_dead_letters import replay_dead_letters
from samples.api_server import FakeApi, Reply, Seen, create_items_table, items
from tasks.api.pagination import LinkPagination
from tasks.db.bookkeeping import dead_letters, ensure_bookkeeping
from tasks.db.engine import get_engine
from tasks.errors import ApiError, InputError
from tests.flows.api.helpers import flow_arguments, rows

TOKEN = "Bearer hostile-t0ken-93ff"
SECRET_PART = "hostile-t0ken-93ff"


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi({"items": items(100)}).run() as server:
        yield server


@pytest.fixture
def elsewhere() -> Iterator[FakeApi]:
    with FakeApi({"items": items(100)}).run() as server:
        yield server


@pytest.fixture
def token_block() -> str:
    Secret(value=TOKEN).save("hostile-api-token", overwrite=True)
    return "hostile-api-token"


def pull(api: FakeApi, database_url: str, **options: Any) -> Any:
    defaults = {"path": "/items", "table": "items", "page_size": 20}
    return api_pull(**flow_arguments(api, database_url, **(defaults | options)))


def stored_ids(database_url: str) -> list[int]:
    return [row[0] for row in rows(database_url, "SELECT id FROM items ORDER BY id")]


def sync_states(database_url: str) -> list[tuple[Any, ...]]:
    ensure_bookkeeping(get_engine(database_url))
    return rows(database_url, "SELECT source, last_value FROM batchflows_sync_state")


def test_link_pagination_keeps_the_filter_of_the_path_end_to_end(
    api: FakeApi, sqlite_url: str
) -> None:
    create_items_table(sqlite_url)

    # json-server sends Link headers on numbered pages: the first URL asks for page 1.
    path = "/items?id_gte=41&_page=1"
    result = pull(api, sqlite_url, path=path, pagination=LinkPagination())

    assert stored_ids(sqlite_url) == list(range(41, 101))
    assert result.pages == 3
    assert [seen.query.get("_page") for seen in api.seen] == ["1", "2", "3"]
    assert all(seen.query["id_gte"] == "41" for seen in api.seen)


def test_a_next_link_pointing_to_itself_stops_with_a_clear_error(
    api: FakeApi, sqlite_url: str
) -> None:
    create_items_table(sqlite_url)
    itself = f"{api.url}/items?_limit=1"  # the first request's own URL
    api.hooks.append(lambda seen: Reply(200, '[{"id": 1}]', {"Link": f'<{itself}>; rel="next"'}))

    with pytest.raises(ApiError, match="again: the pagination loops"):
        pull(api, sqlite_url, pagination=LinkPagination(), page_size=1)

    assert len(api.seen) == 1
    assert stored_ids(sqlite_url) == [1]


def test_an_api_ignoring_the_page_parameter_stops_at_the_second_page(sqlite_url: str) -> None:
    create_items_table(sqlite_url)
    with FakeApi({"items": items(100)}, counts=False).run() as api:
        api.hooks.append(lambda seen: Reply(200, '[{"id": 1}, {"id": 2}]'))
        with pytest.raises(ApiError, match="the API ignores the pagination parameters"):
            pull(api, sqlite_url, page_size=2)

    assert len(api.seen) == 2
    assert stored_ids(sqlite_url) == [1, 2]


def test_an_api_ignoring_the_page_parameter_is_caught_when_pages_run_concurrently(
    api: FakeApi, sqlite_url: str
) -> None:
    create_items_table(sqlite_url)
    api.hooks.append(lambda seen: Reply(200, '[{"id": 1}, {"id": 2}]', {"X-Total-Count": "40"}))

    with pytest.raises(ApiError, match=r"page 2 \(_page=2\) holds the same records as page 1"):
        pull(api, sqlite_url, page_size=2, max_concurrency=2)

    assert stored_ids(sqlite_url) == [1, 2]
    # The first page, the window of 2 x max_concurrency fetched ahead, refilled once.
    assert len(api.seen) <= 1 + 2 * 2 + 1


def test_max_pages_bounds_a_pull_that_never_ends(sqlite_url: str) -> None:
    create_items_table(sqlite_url)
    with (
        FakeApi({"items": items(100)}, counts=False).run() as api,
        pytest.raises(InputError, match="more than max_pages=3"),
    ):
        pull(api, sqlite_url, page_size=10, max_pages=3)

    assert len(api.seen) == 3
    assert stored_ids(sqlite_url) == list(range(1, 31))


def test_a_hundred_billion_total_stops_before_a_second_request(
    api: FakeApi, sqlite_url: str
) -> None:
    create_items_table(sqlite_url)
    api.hooks.append(lambda seen: Reply(200, '[{"id": 1}]', {"X-Total-Count": "100000000000"}))

    with pytest.raises(InputError, match="announces 100,000,000,000 pages, more than max_pages"):
        pull(api, sqlite_url, page_size=1)

    assert len(api.seen) == 1
    assert stored_ids(sqlite_url) == []


def test_a_next_link_to_another_origin_gets_neither_the_token_nor_a_request(
    api: FakeApi, elsewhere: FakeApi, sqlite_url: str, token_block: str
) -> None:
    create_items_table(sqlite_url)
    api.hooks.append(
        lambda seen: Reply(200, '[{"id": 1}]', {"Link": f'<{elsewhere.url}/steal>; rel="next"'})
    )

    with pytest.raises(ApiError, match="another origin"):
        pull(api, sqlite_url, pagination=LinkPagination(), auth_block=token_block)

    assert [seen.authorization for seen in api.seen] == [TOKEN]
    assert elsewhere.seen == []


def test_a_password_in_base_url_reaches_no_log_result_or_table(
    api: FakeApi, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    create_items_table(sqlite_url)
    hostile = api.url.replace("http://", "http://admin:pa55-w0rd-77@")

    with caplog.at_level(logging.DEBUG), pytest.raises(InputError) as refused:
        pull(api, sqlite_url, base_url=hostile)

    assert "carries credentials" in str(refused.value)
    assert "pa55-w0rd-77" not in str(refused.value)
    assert "pa55-w0rd-77" not in caplog.text
    assert api.seen == []
    assert sync_states(sqlite_url) == []


def test_the_sync_state_names_the_source_without_secrets_in_its_query(
    api: FakeApi, sqlite_url: str
) -> None:
    create_items_table(sqlite_url)

    result = pull(api, sqlite_url, params={"access_token": "q-t0k-55"})

    assert result.records == 100
    assert "q-t0k-55" not in result.source
    [(source, _)] = sync_states(sqlite_url)
    assert "q-t0k-55" not in source
    assert "access_token=***" in source


def create_outbox(database_url: str, names: list[str]) -> None:
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
        rows_ = [{"id": i, "name": name} for i, name in enumerate(names, start=1)]
        conn.execute(outbox.insert(), rows_)


def push(api: FakeApi, database_url: str, **options: Any) -> Any:
    defaults = {"path": "/outbox", "table": "outbox"}
    return api_push(**flow_arguments(api, database_url, **(defaults | options)))


def letters(database_url: str) -> list[dict[str, Any]]:
    engine = get_engine(database_url)
    ensure_bookkeeping(engine)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(dead_letters))]


def test_a_record_value_of_dot_dot_stays_inside_its_path_segment(
    api: FakeApi, sqlite_url: str
) -> None:
    create_outbox(sqlite_url, ["..", "a/b", "ok"])

    result = push(api, sqlite_url, path="/outbox/{name}", method="PUT")

    assert result.succeeded == 3
    assert sorted(seen.path for seen in api.seen) == [
        "/outbox/%2E%2E",
        "/outbox/a%2Fb",
        "/outbox/ok",
    ]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/outbox/{id", "is not a valid template"),
        ("/outbox/{id.__class__}", "is not a plain record field"),
    ],
)
def test_a_malformed_path_template_sends_nothing(
    api: FakeApi, sqlite_url: str, path: str, message: str
) -> None:
    create_outbox(sqlite_url, ["x"])

    with pytest.raises(InputError, match=message):
        push(api, sqlite_url, path=path)

    assert api.seen == []
    assert letters(sqlite_url) == []


def test_a_redirected_push_is_dead_lettered_and_the_target_gets_nothing(
    api: FakeApi, elsewhere: FakeApi, sqlite_url: str
) -> None:
    create_outbox(sqlite_url, ["a", "b"])
    api.hooks.append(lambda seen: Reply(302, "", {"Location": f"{elsewhere.url}/outbox"}))

    result = push(api, sqlite_url)

    assert (result.succeeded, result.dead_lettered) == (0, 2)
    assert [letter["status_code"] for letter in letters(sqlite_url)] == [302, 302]
    assert all("a push is never redirected" in letter["error"] for letter in letters(sqlite_url))
    assert elsewhere.seen == []


def test_an_api_echoing_the_token_leaves_it_out_of_dead_letters(
    api: FakeApi, sqlite_url: str, token_block: str
) -> None:
    create_outbox(sqlite_url, ["a"])

    def echo(seen: Seen) -> Reply:
        return Reply(422, f'{{"headers": "{seen.authorization}"}}')

    api.hooks.append(echo)

    result = push(api, sqlite_url, auth_block=token_block)

    assert result.dead_lettered == 1
    assert api.seen[0].authorization == TOKEN
    [letter] = letters(sqlite_url)
    stored = " ".join(str(value) for value in letter.values())
    assert SECRET_PART not in stored
    assert "***" in letter["response_excerpt"]


def test_replay_sends_only_the_letters_addressed_to_its_base_url(
    api: FakeApi, elsewhere: FakeApi, sqlite_url: str, token_block: str
) -> None:
    create_outbox(sqlite_url, ["a", "b"])
    api.hooks.append(lambda seen: Reply(400, "{}"))
    push(api, sqlite_url)
    api.hooks.clear()
    planted = {
        "method": "POST",
        "url": f"{elsewhere.url}/steal",
        "idempotency_key": "planted",
        "record_key": [99],
        "payload": {"id": 99},
        "headers": {},
        "error": "planted",
        "attempts": 1,
    }
    with get_engine(sqlite_url).begin() as conn:
        conn.execute(dead_letters.insert().values(planted))

    result = replay_dead_letters(
        base_url=api.url, auth_block=token_block, database=sqlite_url, backoff_seconds=0.01
    )

    assert (result.replayed, result.succeeded) == (2, 2)
    assert elsewhere.seen == []
    assert [seen.authorization for seen in api.seen[-2:]] == [TOKEN, TOKEN]
    pending = [letter["url"] for letter in letters(sqlite_url) if letter["replayed_at"] is None]
    assert pending == [f"{elsewhere.url}/steal"]
