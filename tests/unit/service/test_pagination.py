"""Opaque cursors and pages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from prefect.client.schemas.filters import FlowRunFilterExpectedStartTime, FlowRunFilterId

from service.errors import ServiceError
from service.filters import listed_after, status_filter, tags_filter
from service.pagination import (
    MAX_SEEN,
    Keyset,
    check_limit,
    decode_cursor,
    decode_keyset,
    encode_cursor,
    page,
)

AT = datetime(2026, 12, 3, 20, 0, 0, 123456, tzinfo=UTC)


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


def test_a_keyset_cursor_round_trips_its_time_to_the_microsecond_and_its_ids() -> None:
    keyset = Keyset(AT, [str(uuid.uuid4()), str(uuid.uuid4())])

    assert decode_keyset(encode_cursor(keyset)) == keyset
    assert decode_keyset(None) is None


@pytest.mark.parametrize(
    "hostile",
    [
        encode_cursor(10),
        encode_cursor({"before": "2026-12-03T20:00:00", "seen": []}),
        encode_cursor({"before": "yesterday", "seen": []}),
        encode_cursor({"before": AT.isoformat(), "seen": ["1' OR '1'='1"]}),
        encode_cursor({"before": AT.isoformat(), "seen": [7]}),
        encode_cursor({"before": AT.isoformat(), "seen": "abc"}),
        encode_cursor({"before": AT.isoformat(), "seen": [], "offset": 3}),
        encode_cursor({"before": AT.isoformat(), "seen": [str(uuid.uuid4())] * (MAX_SEEN + 1)}),
        encode_cursor({"before": "0001-01-01T00:00:00+14:00", "seen": []}),
        "!!",
    ],
    ids=lambda value: value[:40],
)
def test_a_keyset_cursor_this_api_never_gave_is_400(hostile: str) -> None:
    with pytest.raises(ServiceError) as refused:
        decode_keyset(hostile)

    assert (refused.value.status, refused.value.fields) == (400, {"cursor": "invalid cursor"})


def test_the_next_page_of_runs_starts_at_the_keyset_less_the_runs_already_listed() -> None:
    seen = str(uuid.uuid4())

    narrowed = listed_after(tags_filter(["batchflows"]), Keyset(AT, [seen]))

    assert narrowed.expected_start_time == FlowRunFilterExpectedStartTime(before_=AT)
    assert narrowed.id is not None
    assert narrowed.id.not_any_ == [uuid.UUID(seen)]
    assert narrowed.tags == tags_filter(["batchflows"]).tags


def test_ids_the_filter_already_leaves_out_stay_left_out() -> None:
    excluded, seen = uuid.uuid4(), uuid.uuid4()
    runs = tags_filter(["batchflows"]).model_copy(
        update={"id": FlowRunFilterId(any_=[excluded, seen], not_any_=[excluded])}
    )

    narrowed = listed_after(runs, Keyset(AT, [str(seen)]))

    assert narrowed.id == FlowRunFilterId(any_=[excluded, seen], not_any_=[excluded, seen])


def test_a_page_without_a_next_position_has_no_cursor() -> None:
    assert page(list(range(11)), 10, None)["nextCursor"] is None


def test_a_status_that_bounds_the_start_time_keeps_the_tighter_bound() -> None:
    later = datetime(2026, 12, 4, tzinfo=UTC)

    queued = listed_after(status_filter("queued", AT), Keyset(later, []))
    delayed = listed_after(status_filter("delayed", AT), Keyset(later, []))

    assert queued.expected_start_time == FlowRunFilterExpectedStartTime(before_=AT)
    assert delayed.expected_start_time == FlowRunFilterExpectedStartTime(after_=AT, before_=later)
