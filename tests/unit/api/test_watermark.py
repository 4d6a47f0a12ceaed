"""The incremental high-water mark: advanced per page while ordered, held back otherwise."""

from __future__ import annotations

import json

import pytest

from tasks.api.watermark import Incremental, Watermark
from tasks.errors import InputError


def test_query_sorts_ascending_and_filters_from_the_mark_inclusively() -> None:
    incremental = Incremental(field="updated_at", param="updated_at_gte")

    assert incremental.query(None) == {"_sort": "updated_at", "_order": "asc"}
    assert incremental.query("2024-01-01") == {
        "_sort": "updated_at",
        "_order": "asc",
        "updated_at_gte": "2024-01-01",
    }


def test_mark_advances_with_each_ordered_page() -> None:
    mark = Watermark("v", stored=None)

    mark.observe([{"v": 1}, {"v": 3}], "page 1")
    assert mark.to_store(is_last=False) == "3"
    mark.observe([{"v": 3}, {"v": 8}], "page 2")
    assert mark.to_store(is_last=False) == "8"


def test_mark_never_goes_below_the_stored_one() -> None:
    mark = Watermark("v", stored=json.dumps("2024-05-01"))

    mark.observe([{"v": "2024-04-01"}], "page 1")

    assert mark.to_store(is_last=True) == json.dumps("2024-05-01")


def test_unordered_pages_hold_the_mark_back_until_the_last_page() -> None:
    mark = Watermark("v", stored=None)
    mark.observe([{"v": 5}, {"v": 2}], "page 1")

    assert mark.to_store(is_last=False) is None
    mark.observe([{"v": 4}], "page 2")
    assert mark.to_store(is_last=True) == "5"


def test_numbers_compare_as_numbers() -> None:
    mark = Watermark("v", stored=None)

    mark.observe([{"v": 9}, {"v": 10}], "page 1")

    assert mark.ordered
    assert mark.to_store(is_last=False) == "10"


@pytest.mark.parametrize("record", [{"id": 1}, {"id": 1, "v": None}, {"id": 1, "v": {"a": 1}}])
def test_a_record_without_the_field_is_an_error_naming_the_parameter(
    record: dict[str, object],
) -> None:
    with pytest.raises(InputError, match=r"incremental.field.*record 2 of page 3"):
        Watermark("v", stored=None).observe([{"v": 1}, record], "page 3")
