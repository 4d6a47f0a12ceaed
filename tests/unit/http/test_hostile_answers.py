"""HttpCaller against hostile or broken answers from a real loopback server.

Each test gives the attack as input and checks exactly what was sent, to whom, and what the
error says (and does not say).
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from typing import Any

import pytest

from samples.api_server import FakeApi, Reply, Seen, items
from tasks.errors import InputError
from tasks.http.auth import plain_headers
from tasks.http.caller import HttpCaller
from tasks.http.client import endpoint
from tasks.http.options import HttpOptions

TOKEN = "Bearer t0ken-Vx93kq"


@pytest.fixture
def home() -> Iterator[FakeApi]:
    with FakeApi({"items": items(5)}).run() as server:
        yield server


@pytest.fixture
def elsewhere() -> Iterator[FakeApi]:
    with FakeApi({"items": items(5)}).run() as server:
        yield server


def caller(home: FakeApi, **options: Any) -> HttpCaller:
    settings: dict[str, Any] = {
        "rate_limit_per_second": 200,
        "backoff_seconds": 0.01,
        "breaker_pause_seconds": 0.1,
        "max_retries": 1,
    }
    http = HttpCaller(HttpOptions(**(settings | options)), base_url=home.url, name="test")
    http.credentials = {"Authorization": TOKEN}  # what auth_block would load from its Secret
    return http


def answer(api: FakeApi, reply: Reply) -> None:
    api.hooks.append(lambda seen: reply)


def test_credentials_go_only_to_the_origin_of_base_url(home: FakeApi, elsewhere: FakeApi) -> None:
    http = caller(home)

    http.try_request("GET", f"{home.url}/items").unwrap()
    http.try_request("GET", f"{elsewhere.url}/items").unwrap()

    assert [seen.authorization for seen in home.seen] == [TOKEN]
    assert [seen.authorization for seen in elsewhere.seen] == [None]


def test_a_push_answered_with_a_redirect_fails_with_its_reason_and_goes_nowhere(
    home: FakeApi, elsewhere: FakeApi
) -> None:
    answer(home, Reply(307, "", {"Location": f"{elsewhere.url}/items"}))

    attempt = caller(home).try_request("POST", f"{home.url}/items", json_body={"id": 1})

    assert attempt.error is not None
    assert attempt.error.status == 307
    assert "not followed, a push is never redirected" in str(attempt.error)
    assert elsewhere.seen == []
    assert [seen.method for seen in home.seen] == ["POST"]  # one attempt: a 3xx is not retried


def test_a_pull_follows_a_redirect_within_the_origin(home: FakeApi) -> None:
    def move(seen: Seen) -> Reply | None:
        return Reply(301, "", {"Location": "/items"}) if seen.path == "/old" else None

    home.hooks.append(move)

    response = caller(home).try_request("GET", f"{home.url}/old").unwrap()

    assert response.json() == items(5)
    assert [seen.path for seen in home.seen] == ["/old", "/items"]


def test_each_hop_of_a_redirect_counts_against_the_rate_limit(home: FakeApi) -> None:
    def move(seen: Seen) -> Reply | None:
        return Reply(301, "", {"Location": "/items"}) if seen.path == "/old" else None

    home.hooks.append(move)
    http = caller(home, rate_limit_per_second=4, max_concurrency=4)

    for _ in range(8):
        http.try_request("GET", f"{home.url}/old").unwrap()

    assert len(home.seen) == 16
    assert home.max_in_any_second() <= 4
    assert http.stats.requests == 16


def test_a_pull_refuses_a_redirect_to_another_origin(home: FakeApi, elsewhere: FakeApi) -> None:
    answer(home, Reply(302, "", {"Location": f"{elsewhere.url}/items"}))

    attempt = caller(home).try_request("GET", f"{home.url}/items")

    assert attempt.error is not None
    assert "a redirect to another origin is not followed" in str(attempt.error)
    assert elsewhere.seen == []


def test_a_redirect_loop_fails_instead_of_spinning(home: FakeApi) -> None:
    other = {"/a": "/b", "/b": "/a"}
    home.hooks.append(lambda seen: Reply(302, "", {"Location": other[seen.path]}))

    attempt = caller(home, max_retries=3).try_request("GET", f"{home.url}/a")

    assert attempt.error is not None
    assert "redirect loop" in str(attempt.error)
    assert [seen.path for seen in home.seen] == ["/a", "/b"]  # not retried either


def test_an_undecodable_body_is_an_api_error_not_a_crash(home: FakeApi) -> None:
    answer(home, Reply(200, "not gzip at all", {"Content-Encoding": "gzip"}))

    attempt = caller(home).try_request("GET", f"{home.url}/items")

    assert attempt.error is not None
    assert attempt.error.status == 200
    assert "the body cannot be decoded" in str(attempt.error)


def test_a_gzip_body_that_is_valid_is_read(home: FakeApi) -> None:
    body = gzip.compress(b'[{"id": 1}]').decode("latin-1")
    answer(home, Reply(200, body, {"Content-Encoding": "gzip"}, content_type="application/json"))

    # The fake server sends text as UTF-8, so compressed bytes above 0x7f arrive mangled:
    # either way the caller answers with a response or an ApiError, never an exception.
    attempt = caller(home).try_request("GET", f"{home.url}/items")

    assert (attempt.response is None) != (attempt.error is None)


def test_an_api_echoing_the_token_never_puts_it_in_errors(home: FakeApi) -> None:
    home.hooks.append(lambda seen: Reply(400, f'{{"you sent": "{seen.authorization}"}}'))

    attempt = caller(home).try_request("POST", f"{home.url}/items", json_body={"id": 1})

    assert attempt.error is not None
    assert home.seen[0].authorization == TOKEN
    for text in (str(attempt.error), attempt.error.body):
        assert "t0ken-Vx93kq" not in text
        assert "***" in text


def test_a_server_trickling_bytes_cannot_hold_a_request_beyond_its_timeout(
    home: FakeApi,
) -> None:
    answer(home, Reply(200, "[" + " " * 200 + "]", trickle_seconds=0.2))
    started = time.monotonic()

    attempt = caller(home, request_timeout_seconds=1.0, max_retries=0).try_request(
        "GET", f"{home.url}/items"
    )

    assert time.monotonic() - started < 3.0  # 200 bytes at 0.2 s each would take 40 s
    assert attempt.error is not None
    assert "ReadTimeout" in str(attempt.error)
    assert "request_timeout_seconds=1" in str(attempt.error)


def test_parameters_never_replace_the_query_string_of_the_url(home: FakeApi) -> None:
    caller(home).try_request("GET", f"{home.url}/items?id=3", params={"_limit": 2}).unwrap()

    assert home.seen[0].query == {"id": "3", "_limit": "2"}


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "Private-Token",
        "X-Api-Key",
        "X-Goog-Api-Key",
        "X-Auth-Token",
        "X-Client-Secret",
        "X-Session-Id",
        "X-Amz-Signature",
    ],
)
def test_credential_like_headers_are_refused_as_plain_headers(name: str) -> None:
    with pytest.raises(InputError, match=f"parameter 'headers': {name} must not be a plain"):
        plain_headers({name: "hunter2", "Accept": "application/json"})


def test_ordinary_headers_pass() -> None:
    headers = {"Accept": "application/json", "X-Request-Source": "batchflows"}

    assert plain_headers(headers) == headers


@pytest.mark.parametrize(
    "base_url",
    ["http://user:pa55w0rd@api.test", "https://pa55w0rd@api.test/v1", "http://:pa55w0rd@api.test"],
)
def test_a_base_url_with_credentials_is_refused_without_echoing_them(base_url: str) -> None:
    with pytest.raises(InputError, match="carries credentials") as refused:
        endpoint(base_url, "/items")

    assert "pa55w0rd" not in str(refused.value)
