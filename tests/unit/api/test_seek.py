"""Paging an incremental pull by value: next requests, ties, the last page, order checks."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tasks.api.pagination import (
    CursorPagination,
    OffsetPagination,
    Page,
    PagePagination,
    PageRequest,
)
from tasks.api.pull_pages import _less_known
from tasks.api.seek import ValueSeek, value_seek
from tasks.api.watermark import Incremental
from tasks.errors import ApiError

RequestParams = dict[str, Any]

URL = "http://api.test/items"
SINCE = Incremental(field="v", param="v_gte")
BY_OFFSET = ValueSeek(pagination=OffsetPagination(), incremental=SINCE, key=["id"])
BY_PAGE = ValueSeek(pagination=PagePagination(), incremental=SINCE, key=["id"])


def answer(
    seek: ValueSeek,
    request: PageRequest,
    values: list[Any],
    total: int | None = None,
    link: str | None = None,
) -> Page:
    """`seek`'s strategy reading an answer of records with ids from 1 and `values`."""
    body = [{"id": i, "v": value} for i, value in enumerate(values, start=1)]
    headers = {} if total is None else {"X-Total-Count": str(total)}
    if link is not None:
        headers["Link"] = link
    sent = httpx.Request("GET", request.url, params=request.params)
    response = httpx.Response(200, json=body, headers=headers, request=sent)
    return seek.pagination.read(request, response)


def asked(params: RequestParams, **fields: Any) -> PageRequest:
    return PageRequest(index=1, url=URL, params=params, position="", **fields)


def test_the_next_page_starts_at_the_last_value_less_the_records_of_it_already_read() -> None:
    first = OffsetPagination().first(URL, SINCE.query(None), 4)

    following = BY_OFFSET.next(answer(BY_OFFSET, first, [1, 2, 3, 3]), 4)

    assert following is not None
    assert following.params == {"_sort": "v", "_order": "asc", "v_gte": 3, "_limit": 4, "_start": 0}
    assert following.known == [[3], [4]]
    assert following.position == "v_gte=3 less 2 read"
    assert following.index == 1


def test_numbered_pages_start_again_at_the_first_less_the_records_already_read() -> None:
    first = PagePagination().first(URL, {}, 4)

    following = BY_PAGE.next(answer(BY_PAGE, first, [1, 3, 3, 3]), 4)

    assert following is not None
    assert (following.params["v_gte"], following.params["_page"]) == (3, 1)
    assert (following.known, following.skip) == ([[2], [3], [4]], 0)


def test_more_records_of_one_value_than_a_page_holds_are_counted_and_skipped() -> None:
    request = asked({"v_gte": 3, "_start": 0, "_limit": 4}, known=[[9]])

    following = BY_OFFSET.next(answer(BY_OFFSET, request, [3, 3, 3, 3]), 4)

    assert following is not None
    assert (following.params["_start"], following.known) == (4, [])
    again = BY_OFFSET.next(answer(BY_OFFSET, following, [3, 3, 3, 3]), 4)
    assert again is not None
    assert again.params["_start"] == 8


def test_counted_numbered_pages_go_on_by_number_and_skip() -> None:
    request = asked({"v_gte": 3, "_page": 2, "_limit": 4}, skip=1)

    following = BY_PAGE.next(answer(BY_PAGE, request, [3, 3, 3, 3]), 4)

    assert following is not None
    assert (following.params["_page"], following.skip) == (3, 0)
    assert answer(BY_PAGE, asked({"_page": 1, "_limit": 4}, skip=3), [3, 3, 3, 5]).records == [
        {"id": 4, "v": 5}
    ]


@pytest.mark.parametrize(
    ("values", "total"), [([1, 2], None), ([1, 2, 3, 4], 4), ([], None)], ids=str
)
def test_a_short_page_an_exhausted_total_or_an_empty_page_is_the_last(
    values: list[int], total: int | None
) -> None:
    first = OffsetPagination().first(URL, {}, 4)

    assert BY_OFFSET.next(answer(BY_OFFSET, first, values, total), 4) is None


def test_a_link_header_decides_over_a_short_page() -> None:
    first = OffsetPagination().first(URL, {}, 10)

    more = BY_OFFSET.next(answer(BY_OFFSET, first, [1, 2, 3], link='<x?p=2>; rel="next"'), 10)
    done = BY_OFFSET.next(
        answer(BY_OFFSET, first, list(range(10)), link='<x?p=1>; rel="first"'), 10
    )

    assert more is not None
    assert more.params["_limit"] == 3
    assert done is None


def test_a_server_that_caps_the_page_size_is_asked_with_its_own_size() -> None:
    first = OffsetPagination().first(URL, {}, 10)

    following = BY_OFFSET.next(answer(BY_OFFSET, first, [1, 2, 3], total=9), 10)

    assert following is not None
    assert (following.params["_limit"], following.known) == (3, [[3]])


@pytest.mark.parametrize(
    "values",
    [
        [2**60, 2**60 + 1],
        ["2024-01-01T00:00:05Z", "2024-01-01T00:00:05.250000Z"],
        ["2024-01-01T00:00:05.1000001Z", "2024-01-01T00:00:05.1000002Z"],
    ],
    ids=["integers", "fractions", "nanoseconds"],
)
def test_large_integers_and_timestamps_compare_exactly(values: list[Any]) -> None:
    first = OffsetPagination().first(URL, {}, 2)

    following = BY_OFFSET.next(answer(BY_OFFSET, first, values), 2)

    assert following is not None
    assert following.known == [[2]]


@pytest.mark.parametrize(
    ("params", "values"), [({}, [1, 3, 2]), ({"v_gte": 5}, [4, 6])], ids=["within", "below"]
)
def test_records_out_of_order_stop_the_pull_naming_the_page_and_the_way_out(
    params: RequestParams, values: list[int]
) -> None:
    request = PageRequest(index=2, url=URL, params={**params, "_start": 0}, position="_start=0")

    with pytest.raises(ApiError, match=r"page 3 .*not in ascending order of 'v'.*seek=false"):
        BY_OFFSET.next(answer(BY_OFFSET, request, values), 10)


def test_a_hostile_value_is_shown_shortened_and_sent_encoded() -> None:
    hostile = "2024'; DROP TABLE items; --&v_gte=0#" + "x" * 200
    first = OffsetPagination().first(URL, {}, 2)

    following = BY_OFFSET.next(answer(BY_OFFSET, first, ["2024", hostile]), 2)

    assert following is not None
    assert len(following.position) < 100
    assert following.position.endswith("less 1 read")
    sent = httpx.URL(following.full_url)
    assert sent.params.get_list("v_gte") == [hostile]
    assert sent.fragment == ""


@pytest.mark.parametrize(
    ("value", "message"), [(float("nan"), "not a number"), ("9" * 3000, "3,000 characters")]
)
def test_a_value_that_cannot_be_paged_by_stops_the_pull(value: Any, message: str) -> None:
    first = OffsetPagination().first(URL, {}, 2)
    page = answer(BY_OFFSET, first, [1]).model_copy(update={"records": [{"id": 1, "v": value}]})

    with pytest.raises(ApiError, match=message):
        BY_OFFSET.next(page, 2)


def test_only_incremental_numbered_pulls_page_by_value() -> None:
    assert value_seek(OffsetPagination(), SINCE, ["id"]) == BY_OFFSET
    assert value_seek(PagePagination(), SINCE, ["id"]) == BY_PAGE
    assert value_seek(CursorPagination(), SINCE, ["id"]) is None
    assert value_seek(PagePagination(), None, ["id"]) is None
    assert value_seek(PagePagination(), SINCE.model_copy(update={"seek": False}), ["id"]) is None


def test_only_known_records_still_at_the_value_asked_for_are_dropped() -> None:
    request = asked({"v_gte": 3, "_start": 0, "_limit": 4}, known=[[1], [2]])
    records = [{"id": 2, "v": 3}, {"id": 1, "v": 4}, {"id": 5, "v": 4}]

    kept = _less_known(records, request, SINCE, ["id"])

    assert kept == [{"id": 1, "v": 4}, {"id": 5, "v": 4}]
