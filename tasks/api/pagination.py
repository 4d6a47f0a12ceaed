"""Pagination strategies: what to request first, what a response says, what to request next.

Like dlt's paginators, each strategy is a small class with three steps: `first` (the first
request), `read` (records, total, links or cursor of a response) and `next` (the request after
a page, None after the last). `Pagination` is their union, told apart by `type`, so the
Prefect form shows a type selector with only the chosen strategy's fields. json-server's
conventions are the defaults:

- `page`: `?_page=N&_limit=M`; the total from `X-Total-Count` (or a body field), or from the
  `Link` header's `rel="last"` page.
- `offset`: `?_start=K&_limit=M`; the total as for `page`.
- `cursor`: `?cursor=C`, the next cursor read from the body at `cursor_path`.
- `link`: follow the `Link` header's `rel="next"` URL until there is none.
- `starting_after`: Stripe's lists: `?starting_after=<id of the page's last record>` while the
  body's `has_more` is true.

When the total is known after the first page (`page`, `offset`), `planned` yields every other
request lazily, so they can be fetched concurrently without building them all up front.
A request's URL keeps its own query string: parameters are merged into it, never replace it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, Any, Literal, NamedTuple

import httpx
from pydantic import BaseModel, ConfigDict, Field

from tasks.errors import ApiError, InputError
from tasks.http.answers import json_body
from tasks.http.redact import redact_url

Scalar = str | int | float | bool
Record = dict[str, Any]


class PageRequest(BaseModel):
    """One page to fetch: its place in the sequence, URL and query parameters. The first
    `skip` records of the answer, and those with a key in `known`, are dropped: an earlier
    page holds them (tasks/api/seek.py)."""

    model_config = ConfigDict(frozen=True)

    index: int
    url: str
    params: dict[str, Scalar]
    position: str
    skip: int = 0
    known: list[list[Any]] = Field(default_factory=list)

    @property
    def number(self) -> int:
        """The page's place, counting from 1."""
        return self.index + 1

    @property
    def full_url(self) -> str:
        """The URL with `params` merged into its own query string (which is kept)."""
        return str(httpx.URL(self.url).copy_merge_params(self.params))

    def describe(self) -> str:
        """The page for messages: its number and position, e.g. `page 3 (_page=3)`."""
        return f"page {self.number} ({redact_url(self.position)})"


class Page(BaseModel):
    """What one response holds: records, and whatever it says about the other pages."""

    request: PageRequest
    records: list[Record]
    received: int = 0
    total: int | None = None
    last_page: int | None = None
    next_url: str | None = None
    next_cursor: str | None = None
    has_link_header: bool = False


class PagePlan(NamedTuple):
    """The pages after the first when their number is known: how many, and their requests."""

    pages: int
    requests: Iterator[PageRequest]


class _Strategy(BaseModel):
    """What every strategy shares: the page size parameter and where the records sit."""

    model_config = ConfigDict(frozen=True)

    size_param: str = "_limit"
    records_path: str | None = None

    def first(self, url: str, params: dict[str, Scalar], page_size: int) -> PageRequest:
        """The request for the first page."""
        base = {**params, self.size_param: page_size}
        return PageRequest(index=0, url=url, params=base, position="first")

    def read(self, request: PageRequest, response: httpx.Response) -> Page:
        """The records and paging facts of `response`."""
        body = json_body(response)
        found = _records(self.records_path, request, body, response)
        page = self._page(request, response, body, found[request.skip :])
        page.received = len(found)
        return page

    def _page(
        self, request: PageRequest, response: httpx.Response, body: Any, records: list[Record]
    ) -> Page:
        del response, body
        return Page(request=request, records=records)

    def next(self, page: Page, page_size: int) -> PageRequest | None:
        """The request after `page` when pages follow one another; None after the last page."""
        raise NotImplementedError

    def planned(self, first: Page, page_size: int) -> PagePlan | None:
        """Every request after `first` when `first` tells how many pages there are."""
        del first, page_size
        return None


class _Numbered(_Strategy):
    """Pages addressed by a number or an offset; the total may come with the first page."""

    total_header: str = "X-Total-Count"
    total_path: str | None = None

    def first(self, url: str, params: dict[str, Scalar], page_size: int) -> PageRequest:
        """The request for the first page (number or offset 0)."""
        return self._numbered(
            PageRequest(index=0, url=url, params=params, position=""), 0, page_size
        )

    def _page(
        self, request: PageRequest, response: httpx.Response, body: Any, records: list[Record]
    ) -> Page:
        links = _links(response)
        raw = (
            _dig(body, self.total_path)
            if self.total_path
            else response.headers.get(self.total_header)
        )
        return Page(
            request=request,
            records=records,
            total=_integer(raw),
            last_page=self._last_page(links.get("last")),
            next_url=links.get("next"),
            has_link_header="link" in response.headers,
        )

    def next(self, page: Page, page_size: int) -> PageRequest | None:
        """The next number; a `Link` header decides when there is one, else a short page ends.

        So `page_size` must not exceed the API's own maximum when the API tells no total.
        """
        if not page.records:
            return None
        last = page.next_url is None if page.has_link_header else len(page.records) < page_size
        return None if last else self._numbered(page.request, page.request.index + 1, page_size)

    def planned(self, first: Page, page_size: int) -> PagePlan | None:
        """The other pages, numbered lazily, when `first` has a total (or a last page).

        A server that caps the page size below `page_size` is detected from the first page
        (fewer records than asked, yet more in total), and pages are counted with its size.
        """
        if not first.records:
            return None
        size = page_size
        if first.total is not None and len(first.records) < min(page_size, first.total):
            size = len(first.records)
        count = self._count(first, size)
        if count is None:
            return None
        requests = (self._numbered(first.request, index, size) for index in range(1, count))
        return PagePlan(count, requests)

    def _count(self, first: Page, size: int) -> int | None:
        return None if first.total is None else max(1, math.ceil(first.total / size))

    def _last_page(self, url: str | None) -> int | None:
        del url
        return None

    def _numbered(self, request: PageRequest, index: int, size: int) -> PageRequest:
        raise NotImplementedError


class PagePagination(_Numbered):
    """`?_page=N&_limit=M`: pages by number, from `first_page`."""

    type: Literal["page"] = "page"
    page_param: str = "_page"
    first_page: int = 1

    def _count(self, first: Page, size: int) -> int | None:
        if first.last_page is not None:
            return max(1, first.last_page - self.first_page + 1)
        return super()._count(first, size)

    def _last_page(self, url: str | None) -> int | None:
        value = None if url is None else httpx.URL(url).params.get(self.page_param)
        return int(value) if value is not None and value.isdigit() else None

    def _numbered(self, request: PageRequest, index: int, size: int) -> PageRequest:
        number = self.first_page + index
        params = {**request.params, self.page_param: number, self.size_param: size}
        position = f"{self.page_param}={number}"
        return PageRequest(index=index, url=request.url, params=params, position=position)


class OffsetPagination(_Numbered):
    """`?_start=K&_limit=M`: pages by the offset of their first record."""

    type: Literal["offset"] = "offset"
    offset_param: str = "_start"

    def _numbered(self, request: PageRequest, index: int, size: int) -> PageRequest:
        params = {**request.params, self.offset_param: index * size, self.size_param: size}
        position = f"{self.offset_param}={index * size}"
        return PageRequest(index=index, url=request.url, params=params, position=position)


class CursorPagination(_Strategy):
    """`?cursor=C`, with the next cursor read from the body at `cursor_path`."""

    type: Literal["cursor"] = "cursor"
    cursor_param: str = "cursor"
    cursor_path: str = "next_cursor"

    def _page(
        self, request: PageRequest, response: httpx.Response, body: Any, records: list[Record]
    ) -> Page:
        cursor = _dig(body, self.cursor_path)
        text = None if cursor in (None, "") else str(cursor)
        return Page(request=request, records=records, next_cursor=text)

    def next(self, page: Page, page_size: int) -> PageRequest | None:
        """The same request with the page's cursor; None without records or cursor."""
        if not page.records or page.next_cursor is None:
            return None
        return _after(page, self.cursor_param, page.next_cursor)


class LinkPagination(_Strategy):
    """Follow the `Link` header's `rel="next"` URL until there is none."""

    type: Literal["link"] = "link"

    def _page(
        self, request: PageRequest, response: httpx.Response, body: Any, records: list[Record]
    ) -> Page:
        return Page(request=request, records=records, next_url=_links(response).get("next"))

    def next(self, page: Page, page_size: int) -> PageRequest | None:
        """The next link as it is (its query holds the position); None without one."""
        if not page.records or page.next_url is None:
            return None
        url = page.next_url
        shown = redact_url(url)
        return PageRequest(index=page.request.index + 1, url=url, params={}, position=shown)


class StartingAfterPagination(_Strategy):
    """Stripe's lists: `?starting_after=<last record's id>` while `has_more` is true."""

    type: Literal["starting_after"] = "starting_after"
    size_param: str = "limit"
    records_path: str | None = "data"
    starting_after_param: str = "starting_after"
    id_field: str = "id"
    has_more_path: str = "has_more"

    def _page(
        self, request: PageRequest, response: httpx.Response, body: Any, records: list[Record]
    ) -> Page:
        more = _dig(body, self.has_more_path) is True
        last = records[-1].get(self.id_field) if records else None
        if more and last is None:
            raise ApiError(
                f"GET {redact_url(str(response.request.url))} ({request.describe()}): "
                f"has_more is true but the last record has no {self.id_field!r}; set "
                "pagination.id_field",
                status=response.status_code,
            )
        cursor = str(last) if more else None
        return Page(request=request, records=records, next_cursor=cursor)

    def next(self, page: Page, page_size: int) -> PageRequest | None:
        """The same request, starting after the page's last record; None once has_more ends."""
        if not page.records or page.next_cursor is None:
            return None
        return _after(page, self.starting_after_param, page.next_cursor)


Pagination = Annotated[
    PagePagination | OffsetPagination | CursorPagination | LinkPagination | StartingAfterPagination,
    Field(discriminator="type"),
]


def _after(page: Page, param: str, value: str) -> PageRequest:
    request = page.request
    return PageRequest(
        index=request.index + 1,
        url=request.url,
        params={**request.params, param: value},
        position=f"{param}={value}",
    )


def _links(response: httpx.Response) -> dict[str, str]:
    return {
        str(rel): str(response.request.url.join(link["url"]))
        for rel, link in response.links.items()
        if link.get("url")
    }


def _records(
    path: str | None, request: PageRequest, body: Any, response: httpx.Response
) -> list[Record]:
    found = body if not path else _dig(body, path, missing=_MISSING)
    where = f"GET {redact_url(str(response.request.url))} ({request.describe()})"
    if found is _MISSING:
        keys = sorted(body) if isinstance(body, dict) else type(body).__name__
        raise InputError(
            f"parameter 'pagination.records_path': {path!r} is not in the response of {where}; "
            f"the body has {keys}"
        )
    if not isinstance(found, list):
        hint = "" if path else "; set pagination.records_path to where the list sits"
        raise ApiError(
            f"{where}: expected a list of records at {path or 'the top of the body'}, "
            f"got {type(found).__name__}{hint}",
            status=response.status_code,
        )
    for position, record in enumerate(found):
        if not isinstance(record, dict):
            raise ApiError(
                f"{where}: record {position + 1} is a {type(record).__name__}, not an object",
                status=response.status_code,
            )
    return found


def _integer(raw: Any) -> int | None:
    try:
        return None if raw is None else int(raw)
    except (TypeError, ValueError):
        return None


_MISSING = object()


def _dig(body: Any, path: str, missing: Any = None) -> Any:
    """The value at dotted `path` in `body`, or `missing`."""
    value = body
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return missing
        value = value[part]
    return value
