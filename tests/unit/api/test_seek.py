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
from tasks.api.seek import ValueSeek, value_seek
from tasks.api.watermark import Incremental
from tasks.errors import ApiError

URL = "http://api.test/items"
SINCE = Incremental(field="v", param="v_gte")
BY_OFFSET = ValueSeek(pagination=OffsetPagination(), incremental=SINCE)
BY_PAGE = ValueSeek(pagination=PagePagination(), incremental=SINCE)


def answer(
    seek: ValueSeek, request: PageRequest, values: list[Any], total: int | None = None
) -> Page:
    """`seek`'s strategy reading an answer of records with ids from 1 and `values`."""
    body = [{"id": i, "v": value} for i, value in enumerate(values, start=1)]
    headers = {} if total is None else {"X-Total-Count": str(total)}
    sent = httpx.Request("GET", request.url, params=request.params)
    response = httpx.Response(200, json=body, headers=headers, request=sent)
    return seek.pagination.read(request, response)


def test_the_next_page_starts_at_the_last_value_past_the_records_of_it_already_read() -> None:
    first = OffsetPagination().first(URL, SINCE.query(None), 4)

    following = BY_OFFSET.next(answer(BY_OFFSET, first, [1, 2, 3, 3]), 4)

    assert following is not None
    assert following.params == {"_sort": "v", "_order": "asc", "v_gte": 3, "_limit": 4, "_start": 2}
    assert following.position == "v_gte=3 _start=2"
    assert following.index == 1


def test_a_page_of_ties_with_the_value_asked_for_moves_past_all_of_them() -> None:
    request = PageRequest(
        index=3, url=URL, params={"v_gte": 3, "_start": 2, "_limit": 4}, position=""
    )

    following = BY_OFFSET.next(answer(BY_OFFSET, request, [3, 3, 3, 3]), 4)

    assert following is not None
    assert (following.params["v_gte"], following.params["_start"]) == (3, 6)


def test_numbered_pages_skip_the_records_an_earlier_page_holds() -> None:
    first = PagePagination().first(URL, {}, 4)

    following = BY_PAGE.next(answer(BY_PAGE, first, [1, 3, 3, 3]), 4)

    assert following is not None
    assert (following.params["v_gte"], following.params["_page"], following.skip) == (3, 1, 3)
    assert following.position == "v_gte=3 _page=1 from record 4"
    again = answer(BY_PAGE, following, [3, 3, 3, 5])
    assert again.records == [{"id": 4, "v": 5}]


def test_ties_longer_than_a_page_go_on_to_the_next_number() -> None:
    request = PageRequest(
        index=1, url=URL, params={"v_gte": 3, "_page": 1, "_limit": 4}, position="", skip=3
    )

    following = BY_PAGE.next(answer(BY_PAGE, request, [3, 3, 3, 3, 3]), 4)

    assert following is not None
    assert (following.params["_page"], following.skip) == (2, 1)


@pytest.mark.parametrize(
    ("values", "total"), [([1, 2], None), ([1, 2, 3, 4], 4), ([], None)], ids=str
)
def test_a_short_page_an_exhausted_total_or_an_empty_page_is_the_last(
    values: list[int], total: int | None
) -> None:
    first = OffsetPagination().first(URL, {}, 4)

    assert BY_OFFSET.next(answer(BY_OFFSET, first, values, total), 4) is None


def test_a_server_that_caps_the_page_size_is_asked_with_its_own_size() -> None:
    first = OffsetPagination().first(URL, {}, 10)

    following = BY_OFFSET.next(answer(BY_OFFSET, first, [1, 2, 3], total=9), 10)

    assert following is not None
    assert (following.params["_limit"], following.params["_start"]) == (3, 1)


@pytest.mark.parametrize(
    ("params", "values"), [({}, [1, 3, 2]), ({"v_gte": 5}, [4, 6])], ids=["within", "below"]
)
def test_records_out_of_order_stop_the_pull_naming_the_page_and_the_way_out(
    params: dict[str, Any], values: list[int]
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
    assert following.position.endswith("_start=1")
    sent = httpx.URL(following.full_url)
    assert sent.params.get_list("v_gte") == [hostile]
    assert sent.fragment == ""


def test_only_incremental_numbered_pulls_page_by_value() -> None:
    assert value_seek(OffsetPagination(), SINCE) == BY_OFFSET
    assert value_seek(PagePagination(), SINCE) == BY_PAGE
    assert value_seek(CursorPagination(), SINCE) is None
    assert value_seek(PagePagination(), None) is None
    assert value_seek(PagePagination(), SINCE.model_copy(update={"seek": False})) is None
