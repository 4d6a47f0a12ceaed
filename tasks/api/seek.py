"""Page an incremental pull by value, so records that move during the pull are never skipped.

Paging an incremental pull by position (`_page=3`, `_start=40`) loses records when the data
changes while it is read: a record updated after its page was read moves to the end of the
order, every record behind it shifts one place forward, and the one that crosses the page
boundary is never read; the mark then rises past it. So with `page` or `offset` pagination
an incremental pull asks for each next page from the last value it read (`updated_at_gte=v`)
rather than from a position. The records of value `v` it already holds are recognised by
their key (and value) and dropped from the answer, so one of them that changes or goes away
meanwhile shifts nothing. A record that moves goes behind `v` and is read later in this run
or the next; nothing below the mark is unread. Only when more records share one value than a
page holds are they counted and skipped by position instead, which is exact only while those
records hold still.

This needs the API to sort by `field` ascending, which every page is checked for; in the
positional case, records of one value must also keep their order from one request to the next
(sort by the field and the key where the API allows it).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tasks.api.pagination import (
    OffsetPagination,
    Page,
    PagePagination,
    PageRequest,
    Record,
    Scalar,
)
from tasks.api.watermark import Incremental, order_key, record_value
from tasks.errors import ApiError

SHOWN_VALUE_CHARS = 60


class ValueSeek(BaseModel):
    """The requests after each page of an incremental `page` or `offset` pull, by value."""

    model_config = ConfigDict(frozen=True)

    pagination: PagePagination | OffsetPagination
    incremental: Incremental
    key: list[str]

    def next(self, page: Page, page_size: int) -> PageRequest | None:
        """The request for the records after `page`'s last one; None after the last page."""
        request = page.request
        if not page.records:
            return None
        values = self._ascending(page)
        start = self._offset(request)
        size = int(request.params.get(self.pagination.size_param, page_size))
        if page.total is not None:
            if start + page.received >= page.total:
                return None
            size = min(size, page.received)
        elif page.has_link_header:
            if page.next_url is None:
                return None
            size = min(size, page.received)
        elif page.received < size:
            return None
        last = order_key(values[-1])
        asked = request.params.get(self.incremental.param)
        if asked is not None and order_key(asked) == last:
            # Every record of this answer, dropped ones included, holds the value asked for:
            # more of them than a page holds, so they are counted from here on.
            return self._from(request, values[-1], start + page.received, size)
        ties = [r for r, v in zip(page.records, values, strict=True) if order_key(v) == last]
        if len(ties) < size:
            return self._again(request, values[-1], self._keys(ties), size)
        return self._from(request, values[-1], len(ties), size)

    def _keys(self, records: list[Record]) -> list[list[Any]]:
        return [[record.get(name) for name in self.key] for record in records]

    def _ascending(self, page: Page) -> list[Scalar]:
        """The page's values of `field`, checked to ascend from the value asked for."""
        where = page.request.describe()
        field = self.incremental.field
        values = [record_value(r, field, p, where) for p, r in enumerate(page.records)]
        previous = page.request.params.get(self.incremental.param)
        for value in values:
            if previous is not None and order_key(value) < order_key(previous):
                raise ApiError(
                    f"{where}: records are not in ascending order of {field!r} "
                    f"({_shown(previous)} before {_shown(value)}): the API ignores the sort "
                    f"parameter {self.incremental.sort_param!r} or the filter "
                    f"{self.incremental.param!r}, or compares timestamps of varying formats as "
                    "text, so the pull cannot page by value; check 'incremental', or set "
                    "incremental.seek=false to page by position"
                )
            previous = value
        return values

    def _offset(self, request: PageRequest) -> int:
        """Where `request`'s page starts among the records at or after its value."""
        pagination = self.pagination
        if isinstance(pagination, OffsetPagination):
            return int(request.params.get(pagination.offset_param, 0))
        size = int(request.params[pagination.size_param])
        return (int(request.params[pagination.page_param]) - pagination.first_page) * size

    def _again(
        self, request: PageRequest, value: Scalar, known: list[list[Any]], size: int
    ) -> PageRequest:
        """The first page of the records at or after `value`, less the `known` ones of it."""
        pagination = self.pagination
        params = {**request.params, self.incremental.param: value, pagination.size_param: size}
        if isinstance(pagination, OffsetPagination):
            params[pagination.offset_param] = 0
        else:
            params[pagination.page_param] = pagination.first_page
        position = f"{self.incremental.param}={_shown(value)} less {len(known)} read"
        return PageRequest(
            index=request.index + 1, url=request.url, params=params, position=position, known=known
        )

    def _from(self, request: PageRequest, value: Scalar, ties: int, size: int) -> PageRequest:
        """The records at or after `value` past the first `ties` of them: for more records of
        one value than a page holds, which are then counted, not recognised."""
        pagination = self.pagination
        params = {**request.params, self.incremental.param: value, pagination.size_param: size}
        if isinstance(pagination, OffsetPagination):
            params[pagination.offset_param] = ties
            skip = 0
            place = f"{pagination.offset_param}={ties}"
        else:
            params[pagination.page_param] = pagination.first_page + ties // size
            skip = ties % size
            place = f"{pagination.page_param}={params[pagination.page_param]}"
            place += f" from record {skip + 1}" if skip else ""
        position = f"{self.incremental.param}={_shown(value)} {place}"
        return PageRequest(
            index=request.index + 1, url=request.url, params=params, position=position, skip=skip
        )


def value_seek(
    pagination: object, incremental: Incremental | None, key: list[str]
) -> ValueSeek | None:
    """The by-value paging of an incremental `page` or `offset` pull, unless turned off."""
    if incremental is None or not incremental.seek:
        return None
    if not isinstance(pagination, PagePagination | OffsetPagination):
        return None
    return ValueSeek(pagination=pagination, incremental=incremental, key=key)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."
