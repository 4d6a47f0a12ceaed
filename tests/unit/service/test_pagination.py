"""Opaque cursors and pages."""

from __future__ import annotations

import pytest

from service.errors import ServiceError
from service.pagination import check_limit, decode_cursor, encode_cursor, page


def test_a_cursor_round_trips_its_position() -> None:
    assert decode_cursor(encode_cursor(12345)) == 12345
    assert decode_cursor(None) is None
    assert decode_cursor("") is None


@pytest.mark.parametrize(
    "hostile",
    ["!!", "e30", encode_cursor(-1), encode_cursor("1; DROP TABLE x"), encode_cursor(True)],
)
def test_a_cursor_this_api_never_gave_is_400(hostile: str) -> None:
    with pytest.raises(ServiceError) as refused:
        decode_cursor(hostile)

    assert (refused.value.status, refused.value.fields) == (400, {"cursor": "invalid cursor"})


def test_a_page_has_a_next_cursor_only_when_more_items_exist() -> None:
    full = page(list(range(11)), 10, 10)
    last = page(list(range(10)), 10, 10)

    assert full["items"] == list(range(10))
    assert decode_cursor(full["nextCursor"]) == 10
    assert last["nextCursor"] is None


@pytest.mark.parametrize("limit", [0, -1, 501])
def test_a_limit_outside_1_to_500_is_400(limit: int) -> None:
    with pytest.raises(ServiceError):
        check_limit(limit)
