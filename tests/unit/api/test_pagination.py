"""Pagination strategies: first request, reading a response, next and remaining requests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tasks.api.pagination import (
    Page,
    PageRequest,
    Pagination,
    first_request,
    knows_total,
    next_request,
    read_page,
    remaining_requests,
)
from tasks.errors import ApiError, InputError

URL = "http://api.test/items"
PAGE = Pagination()
OFFSET = Pagination(type="offset")
CURSOR = Pagination(type="cursor", records_path="data", cursor_path="meta.next")
LINK = Pagination(type="link")


def respond(
    request: PageRequest, body: Any, headers: dict[str, str] | None = None, status: int = 200
) -> httpx.Response:
    sent = httpx.Request("GET", request.url, params=request.params)
    return httpx.Response(status, json=body, headers=headers, request=sent)


def records(count: int, start: int = 1) -> list[dict[str, int]]:
    return [{"id": i} for i in range(start, start + count)]


def test_first_requests_follow_json_server_names() -> None:
    assert first_request(PAGE, URL, {"q": "x"}, 50).params == {"q": "x", "_limit": 50, "_page": 1}
    assert first_request(OFFSET, URL, {}, 50).params == {"_limit": 50, "_start": 0}
    assert first_request(CURSOR, URL, {}, 50).params == {"_limit": 50}


def test_page_reads_total_and_links_and_plans_every_other_page() -> None:
    first = first_request(PAGE, URL, {}, 10)
    links = '</items?_page=2&_limit=10>; rel="next", </items?_page=4&_limit=10>; rel="last"'
    page = read_page(
        PAGE, first, respond(first, records(10), {"Link": links, "X-Total-Count": "35"})
    )

    assert (page.total, page.last_page) == (35, 4)
    assert page.next_url == "http://api.test/items?_page=2&_limit=10"
    assert knows_total(PAGE, page)
    rest = remaining_requests(PAGE, page, 10)
    assert [r.params["_page"] for r in rest] == [2, 3, 4]
    assert [r.index for r in rest] == [1, 2, 3]


def test_total_count_alone_plans_the_pages() -> None:
    first = first_request(OFFSET, URL, {}, 10)
    page = read_page(OFFSET, first, respond(first, records(10), {"X-Total-Count": "25"}))

    assert [r.params["_start"] for r in remaining_requests(OFFSET, page, 10)] == [10, 20]


def test_a_server_that_caps_the_page_size_is_paged_by_its_own_size() -> None:
    first = first_request(OFFSET, URL, {}, 100)
    page = read_page(OFFSET, first, respond(first, records(40), {"X-Total-Count": "100"}))

    rest = remaining_requests(OFFSET, page, 100)

    assert [(r.params["_start"], r.params["_limit"]) for r in rest] == [(40, 40), (80, 40)]


def test_total_may_come_from_the_body() -> None:
    wrapped = Pagination(records_path="items", total_path="meta.count")
    first = first_request(wrapped, URL, {}, 5)
    body = {"items": records(5), "meta": {"count": 12}}

    assert read_page(wrapped, first, respond(first, body)).total == 12


def test_without_total_or_links_a_short_page_is_the_last() -> None:
    first = first_request(PAGE, URL, {}, 10)
    full = read_page(PAGE, first, respond(first, records(10)))
    following = next_request(PAGE, full, 10)
    assert following is not None
    assert not knows_total(PAGE, full)
    assert following.params["_page"] == 2
    short = read_page(PAGE, following, respond(following, records(3, 11)))

    assert next_request(PAGE, short, 10) is None


def test_a_link_header_without_next_ends_paging_even_after_a_full_page() -> None:
    first = first_request(PAGE, URL, {}, 10)
    page = read_page(PAGE, first, respond(first, records(10), {"Link": '<x>; rel="first"'}))

    assert next_request(PAGE, page, 10) is None


def test_an_empty_page_is_the_last() -> None:
    first = first_request(OFFSET, URL, {}, 10)

    assert next_request(OFFSET, read_page(OFFSET, first, respond(first, [])), 10) is None


def test_cursor_is_read_from_the_body_until_there_is_none() -> None:
    first = first_request(CURSOR, URL, {"q": 1}, 2)
    page = read_page(CURSOR, first, respond(first, {"data": records(2), "meta": {"next": "abc"}}))
    following = next_request(CURSOR, page, 2)
    assert following is not None
    assert following.params == {"q": 1, "_limit": 2, "cursor": "abc"}
    assert following.position == "cursor=abc"
    end = read_page(CURSOR, following, respond(following, {"data": records(1), "meta": {}}))

    assert next_request(CURSOR, end, 2) is None


def test_link_strategy_follows_next_urls() -> None:
    first = first_request(LINK, URL, {}, 10)
    page = read_page(
        LINK,
        first,
        respond(first, records(10), {"Link": '<http://api.test/items?p=x2>; rel="next"'}),
    )
    following = next_request(LINK, page, 10)
    assert following is not None
    assert (following.url, following.params) == ("http://api.test/items?p=x2", {})
    last = read_page(LINK, following, respond(following, records(1)))

    assert next_request(LINK, last, 10) is None


def test_a_missing_records_path_names_the_parameter_and_what_the_body_has() -> None:
    first = first_request(CURSOR, URL, {}, 10)

    with pytest.raises(InputError, match=r"pagination.records_path.*\['results'\]"):
        read_page(CURSOR, first, respond(first, {"results": []}))


@pytest.mark.parametrize(
    ("body", "message"),
    [({"a": 1}, "expected a list of records"), ([1, 2], "record 1 is a int")],
)
def test_a_body_that_is_not_a_list_of_objects_is_an_api_error(body: Any, message: str) -> None:
    first = first_request(PAGE, URL, {}, 10)

    with pytest.raises(ApiError, match=message):
        read_page(PAGE, first, respond(first, body))


def test_non_json_body_is_an_api_error_with_an_excerpt() -> None:
    first = first_request(PAGE, URL, {}, 10)
    sent = httpx.Request("GET", first.url, params=first.params)
    response = httpx.Response(200, text="<html>oops</html>", request=sent)

    with pytest.raises(ApiError, match=r"not JSON.*<html>oops"):
        read_page(PAGE, first, response)


def test_remaining_requests_need_a_total() -> None:
    first = first_request(PAGE, URL, {}, 10)
    page = Page(request=first, records=records(10))

    with pytest.raises(ValueError, match="total"):
        remaining_requests(PAGE, page, 10)
