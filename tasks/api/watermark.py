"""The incremental high-water mark of a pull: the largest `field` value stored so far.

A run asks for records whose `field` is at or after the stored mark (`param`, e.g.
`updated_at_gte`), sorted ascending, so records changed at the very instant of the mark are
fetched again rather than missed (the upsert absorbs the duplicates).

The mark advances page by page, in page order, and is stored in the same transaction as the
page it covers. That is only safe while the pages really come in ascending order: then every
record below the mark is already stored, and a crash loses nothing. If the API ignores the
sort, the mark is held back and stored only with the last page of the run. (With `page` or
`offset` pagination the pages are asked for by value, tasks/api/seek.py, which checks the
order instead.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from tasks.api.pagination import Record, Scalar
from tasks.errors import ApiError, InputError

MAX_VALUE_CHARS = 2048


class Incremental(BaseModel):
    """Fetch only records changed since the last run."""

    field: str
    param: str
    sort_param: str | None = "_sort"
    order_param: str | None = "_order"
    seek: bool = Field(
        default=True,
        description=(
            "With page or offset pagination, ask for each next page from the last value read "
            "(param=value) instead of by position, so records that change during the pull are "
            "not skipped; needs the API to sort by field. False pages by position."
        ),
    )

    def query(self, mark: Scalar | None) -> dict[str, Scalar]:
        """Query parameters: ascending sort on `field`, and the filter from `mark` if any."""
        query: dict[str, Scalar] = {}
        if self.sort_param:
            query[self.sort_param] = self.field
        if self.order_param:
            query[self.order_param] = "asc"
        if mark is not None:
            query[self.param] = mark
        return query


def record_value(record: Record, field: str, position: int, where: str) -> Scalar:
    """The scalar value of `field` in the record at `position` (0-based) of `where`: a
    finite number, or text of at most MAX_VALUE_CHARS characters (it goes into the next URL)."""
    value = record.get(field)
    if value is None or isinstance(value, dict | list):
        raise InputError(
            f"parameter 'incremental.field': record {position + 1} of {where} has no "
            f"scalar field {field!r} (its fields: {', '.join(sorted(record))})"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ApiError(f"{where}: record {position + 1} has {field!r} = {value}, not a number")
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        raise ApiError(
            f"{where}: record {position + 1} has a {field!r} of {len(value):,} characters, "
            f"more than {MAX_VALUE_CHARS:,}: not a value to page by"
        )
    return value  # type: ignore[no-any-return]


def order_key(value: Any) -> tuple[int, int | float | datetime | str, str]:
    """Numbers compare as numbers (exactly, however large), ISO 8601 timestamps as instants
    (`...:05Z` before `...:05.25Z`; one without a zone taken as UTC) and then as text (for
    digits past the microsecond), any other text as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value, "")
    text = str(value)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return (2, text, "")
    return (1, instant if instant.tzinfo else instant.replace(tzinfo=UTC), text)


class Watermark:
    """Tracks the mark over the pages of one run, fed in page order."""

    def __init__(self, field: str, stored: str | None) -> None:
        self.field = field
        self.value: Scalar | None = json.loads(stored) if stored else None
        self.ordered = True
        self._previous: Scalar | None = None

    def observe(self, records: Sequence[Record], where: str) -> None:
        """Take in the next page's records; a record without the field is an error."""
        for position, record in enumerate(records):
            value = record_value(record, self.field, position, where)
            key = order_key(value)
            if self._previous is not None and key < order_key(self._previous):
                self.ordered = False
            self._previous = value
            if self.value is None or key > order_key(self.value):
                self.value = value

    def to_store(self, is_last: bool) -> str | None:
        """The mark to store with the current page (JSON), or None to leave it unchanged."""
        if self.value is None or not (self.ordered or is_last):
            return None
        return json.dumps(self.value)
