"""Page an incremental pull by value, so records that move during the pull are never skipped.

Paging an incremental pull by position (`_page=3`, `_start=40`) loses records when the data
changes while it is read: a record updated after its page was read moves to the end of the
order, every record behind it shifts one place forward, and the one that crosses the page
boundary is never read; the mark then rises past it. So with `page` or `offset` pagination
an incremental pull asks for each next page from the last value it read (`updated_at_gte=v`)
rather than from a position, and skips only the records of value `v` it already holds (the
ties: by offset, or by dropping the first records of a numbered page). A record that moves
goes behind `v` and is read later in this run or the next; nothing below the mark is unread.

This needs the API to sort by `field` ascending, which every page is checked for; ties must
keep their order from one request to the next (sort by the field and the key where the API
allows it).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from tasks.api.pagination import OffsetPagination, Page, PagePagination, PageRequest, Scalar
from tasks.api.watermark import Incremental, order_key, record_value
from tasks.errors import ApiError

SHOWN_VALUE_CHARS = 60


class ValueSeek(BaseModel):
    """The requests after each page of an incremental `page` or `offset` pull, by value."""

    model_config = ConfigDict(frozen=True)

    pagination: PagePagination | OffsetPagination
    incremental: Incremental

    def next(self, page: Page, page_size: int) -> PageRequest | None:
        """The request for the records after `page`'s last one; None after the last page."""
        request = page.request
        if not page.records:
            return None
        values = self._ascending(page)
        offset = self._offset(request) + request.skip
        size = int(request.params.get(self.pagination.size_param, page_size))
        received = request.skip + len(page.records)
        if page.total is not None:
            if offset + len(page.records) >= page.total:
                return None
            size = min(size, received)
        elif (page.has_link_header and page.next_url is None) or received < size:
            return None
        last = values[-1]
        ties = _trailing_ties(values)
        asked = request.params.get(self.incremental.param)
        if asked is not None and ties == len(values) and order_key(asked) == order_key(last):
            ties += offset
        return self._from(request, last, ties, size)

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
                    f"{self.incremental.param!r}, so the pull cannot page by value; check "
                    "'incremental', or set incremental.seek=false to page by position"
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

    def _from(self, request: PageRequest, value: Scalar, ties: int, size: int) -> PageRequest:
        """The request for the records at or after `value`, past the first `ties` of them."""
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


def value_seek(pagination: object, incremental: Incremental | None) -> ValueSeek | None:
    """The by-value paging of an incremental `page` or `offset` pull, unless turned off."""
    if incremental is None or not incremental.seek:
        return None
    if not isinstance(pagination, PagePagination | OffsetPagination):
        return None
    return ValueSeek(pagination=pagination, incremental=incremental)


def _trailing_ties(values: list[Scalar]) -> int:
    """How many values at the end equal the last one."""
    last = order_key(values[-1])
    count = 0
    for value in reversed(values):
        if order_key(value) != last:
            break
        count += 1
    return count


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."
