"""Pagination strategies: first request, reading a response, next and remaining requests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from tasks.api.pagination import (
    CursorPagination,
    LinkPagination,
    OffsetPagination,
    Page,
    PagePagination,
    PageRequest,
    Pagination,
    StartingAfterPagination,
)
from tasks.errors import ApiError, InputError

URL = "http://api.test/items"
PAGE = PagePagination()
OFFSET = OffsetPagination()
CURSOR = CursorPagination(records_path="data", cursor_path="meta.next")
LINK = LinkPagination()


def respond(
    request: PageRequest, body: Any, headers: dict[str, str] | None = None, status: int = 200
) -> httpx.Response:
    sent = httpx.Request("GET", request.url, params=request.params)
    return httpx.Response(status, json=body, headers=headers, request=sent)


def remaining(strategy: Any, first: Page, page_size: int) -> list[PageRequest]:
    """Every request after `first`, which must tell how many pages there are."""
    planned = strategy.planned(first, page_size)
    assert planned is not None
    return list(planned.requests)


def records(count: int, start: int = 1) -> list[dict[str, int]]:
    return [{"id": i} for i in range(start, start + count)]


def test_first_requests_follow_json_server_names() -> None:
    assert PAGE.first(URL, {"q": "x"}, 50).params == {"q": "x", "_limit": 50, "_page": 1}
    assert OFFSET.first(URL, {}, 50).params == {"_limit": 50, "_start": 0}
    assert CURSOR.first(URL, {}, 50).params == {"_limit": 50}


def test_page_reads_total_and_links_and_plans_every_other_page() -> None:
    first = PAGE.first(URL, {}, 10)
    links = '</items?_page=2&_limit=10>; rel="next", </items?_page=4&_limit=10>; rel="last"'
    page = PAGE.read(first, respond(first, records(10), {"Link": links, "X-Total-Count": "35"}))

    assert (page.total, page.last_page) == (35, 4)
    assert page.next_url == "http://api.test/items?_page=2&_limit=10"
    assert PAGE.planned(page, 10) is not None
    rest = remaining(PAGE, page, 10)
    assert [r.params["_page"] for r in rest] == [2, 3, 4]
    assert [r.index for r in rest] == [1, 2, 3]


def test_total_count_alone_plans_the_pages() -> None:
    first = OFFSET.first(URL, {}, 10)
    page = OFFSET.read(first, respond(first, records(10), {"X-Total-Count": "25"}))

    assert [r.params["_start"] for r in remaining(OFFSET, page, 10)] == [10, 20]


def test_a_server_that_caps_the_page_size_is_paged_by_its_own_size() -> None:
    first = OFFSET.first(URL, {}, 100)
    page = OFFSET.read(first, respond(first, records(40), {"X-Total-Count": "100"}))

    rest = remaining(OFFSET, page, 100)

    assert [(r.params["_start"], r.params["_limit"]) for r in rest] == [(40, 40), (80, 40)]


def test_total_may_come_from_the_body() -> None:
    wrapped = PagePagination(records_path="items", total_path="meta.count")
    first = wrapped.first(URL, {}, 5)
    body = {"items": records(5), "meta": {"count": 12}}

    assert wrapped.read(first, respond(first, body)).total == 12


def test_without_total_or_links_a_short_page_is_the_last() -> None:
    first = PAGE.first(URL, {}, 10)
    full = PAGE.read(first, respond(first, records(10)))
    following = PAGE.next(full, 10)
    assert following is not None
    assert PAGE.planned(full, 10) is None
    assert following.params["_page"] == 2
    short = PAGE.read(following, respond(following, records(3, 11)))

    assert PAGE.next(short, 10) is None


def test_a_link_header_without_next_ends_paging_even_after_a_full_page() -> None:
    first = PAGE.first(URL, {}, 10)
    page = PAGE.read(first, respond(first, records(10), {"Link": '<x>; rel="first"'}))

    assert PAGE.next(page, 10) is None


def test_an_empty_page_is_the_last() -> None:
    first = OFFSET.first(URL, {}, 10)

    assert OFFSET.next(OFFSET.read(first, respond(first, [])), 10) is None


def test_cursor_is_read_from_the_body_until_there_is_none() -> None:
    first = CURSOR.first(URL, {"q": 1}, 2)
    page = CURSOR.read(first, respond(first, {"data": records(2), "meta": {"next": "abc"}}))
    following = CURSOR.next(page, 2)
    assert following is not None
    assert following.params == {"q": 1, "_limit": 2, "cursor": "abc"}
    assert following.position == "cursor=abc"
    end = CURSOR.read(following, respond(following, {"data": records(1), "meta": {}}))

    assert CURSOR.next(end, 2) is None


def test_link_strategy_follows_next_urls() -> None:
    first = LINK.first(URL, {}, 10)
    page = LINK.read(
        first,
        respond(first, records(10), {"Link": '<http://api.test/items?p=x2>; rel="next"'}),
    )
    following = LINK.next(page, 10)
    assert following is not None
    assert (following.url, following.params) == ("http://api.test/items?p=x2", {})
    last = LINK.read(following, respond(following, records(1)))

    assert LINK.next(last, 10) is None


def test_a_missing_records_path_names_the_parameter_and_what_the_body_has() -> None:
    first = CURSOR.first(URL, {}, 10)

    with pytest.raises(InputError, match=r"pagination.records_path.*\['results'\]"):
        CURSOR.read(first, respond(first, {"results": []}))


@pytest.mark.parametrize(
    ("body", "message"),
    [({"a": 1}, "expected a list of records"), ([1, 2], "record 1 is a int")],
)
def test_a_body_that_is_not_a_list_of_objects_is_an_api_error(body: Any, message: str) -> None:
    first = PAGE.first(URL, {}, 10)

    with pytest.raises(ApiError, match=message):
        PAGE.read(first, respond(first, body))


def test_non_json_body_is_an_api_error_with_an_excerpt() -> None:
    first = PAGE.first(URL, {}, 10)
    sent = httpx.Request("GET", first.url, params=first.params)
    response = httpx.Response(200, text="<html>oops</html>", request=sent)

    with pytest.raises(ApiError, match=r"not JSON.*<html>oops"):
        PAGE.read(first, response)


def test_remaining_requests_need_a_total() -> None:
    first = PAGE.first(URL, {}, 10)
    page = Page(request=first, records=records(10))

    assert PAGE.planned(page, 10) is None


def test_starting_after_asks_for_the_records_after_the_last_one_while_has_more() -> None:
    stripe = StartingAfterPagination()
    first = stripe.first(URL, {}, 2)
    assert first.params == {"limit": 2}
    page = stripe.read(first, respond(first, {"data": records(2), "has_more": True}))
    following = stripe.next(page, 2)
    assert following is not None
    assert following.params == {"limit": 2, "starting_after": "2"}
    end = stripe.read(following, respond(following, {"data": records(1, 3), "has_more": False}))

    assert stripe.next(end, 2) is None


def test_starting_after_needs_the_id_of_the_last_record() -> None:
    stripe = StartingAfterPagination()
    first = stripe.first(URL, {}, 2)

    with pytest.raises(ApiError, match=r"has no 'id'; set pagination\.id_field"):
        stripe.read(first, respond(first, {"data": [{"name": "x"}], "has_more": True}))


def test_parameters_are_merged_into_the_query_string_of_the_url() -> None:
    first = PAGE.first(f"{URL}?active=true", {"q": "x"}, 10)

    assert first.full_url == f"{URL}?active=true&q=x&_page=1&_limit=10"


def test_a_huge_total_plans_its_pages_lazily() -> None:
    first = PAGE.first(URL, {}, 10)
    page = PAGE.read(first, respond(first, records(10), {"X-Total-Count": "100000000000"}))

    planned = PAGE.planned(page, 10)

    assert planned is not None
    assert planned.pages == 10_000_000_000
    assert next(planned.requests).params["_page"] == 2


def test_a_plain_dict_chooses_its_strategy_by_type() -> None:
    adapter: TypeAdapter[Pagination] = TypeAdapter(Pagination)

    old = adapter.validate_python({"type": "page", "page_param": "_page", "size_param": "_limit"})
    assert old == PagePagination()
    assert isinstance(adapter.validate_python({"type": "starting_after"}), StartingAfterPagination)
