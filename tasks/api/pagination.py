"""Pagination strategies: what to request first, what a response says, what to request next.

Like a dlt paginator, each strategy has three steps: the first request, reading the page
(records, total, links, cursor) from a response, and the next request. Four strategies, with
json-server's conventions as defaults:

- `page`: `?_page=N&_limit=M`; the total comes from `X-Total-Count` (or a body field), or
  from the `Link` header's `rel="last"` page.
- `offset`: `?_start=K&_limit=M`; the total as for `page`.
- `cursor`: `?cursor=C`, the next cursor read from the body at `cursor_path`.
- `link`: follow the `Link` header's `rel="next"` URL until there is none.

When the total is known after the first page (`page`, `offset`), every other request is known
too and they can be fetched concurrently; otherwise pages follow one another.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from tasks.errors import ApiError, InputError
from tasks.http.caller import json_body

Scalar = str | int | float | bool
Record = dict[str, Any]


class Pagination(BaseModel):
    """How the API splits its records into pages, and where they sit in a response."""

    type: Literal["page", "offset", "cursor", "link"] = "page"
    page_param: str = "_page"
    first_page: int = 1
    size_param: str = "_limit"
    offset_param: str = "_start"
    cursor_param: str = "cursor"
    cursor_path: str = "next_cursor"
    records_path: str | None = None
    total_header: str = "X-Total-Count"
    total_path: str | None = None


class PageRequest(BaseModel):
    """One page to fetch: its place in the sequence, URL and query parameters."""

    model_config = ConfigDict(frozen=True)

    index: int
    url: str
    params: dict[str, Scalar]
    position: str

    @property
    def number(self) -> int:
        """The page's place, counting from 1."""
        return self.index + 1

    def describe(self) -> str:
        """The page for messages: its number and position, e.g. `page 3 (_page=3)`."""
        return f"page {self.number} ({self.position})"


class Page(BaseModel):
    """What one response holds: records, and whatever it says about the other pages."""

    request: PageRequest
    records: list[Record]
    total: int | None = None
    last_page: int | None = None
    next_url: str | None = None
    next_cursor: str | None = None
    has_link_header: bool = False


def first_request(
    pagination: Pagination, url: str, params: dict[str, Scalar], page_size: int
) -> PageRequest:
    """The request for the first page."""
    base = {**params, pagination.size_param: page_size}
    if pagination.type == "page":
        number = pagination.first_page
        return PageRequest(
            index=0,
            url=url,
            params={**base, pagination.page_param: number},
            position=f"{pagination.page_param}={number}",
        )
    if pagination.type == "offset":
        return PageRequest(
            index=0,
            url=url,
            params={**base, pagination.offset_param: 0},
            position=f"{pagination.offset_param}=0",
        )
    return PageRequest(index=0, url=url, params=base, position="first")


def read_page(pagination: Pagination, request: PageRequest, response: httpx.Response) -> Page:
    """The records and paging facts of `response` (a decoded JSON body is read from it)."""
    body = json_body(response)
    records = _records(pagination, request, body, response)
    links = {
        rel: str(response.request.url.join(link["url"]))
        for rel, link in response.links.items()
        if link.get("url")
    }
    cursor = _dig(body, pagination.cursor_path) if pagination.type == "cursor" else None
    return Page(
        request=request,
        records=records,
        total=_total(pagination, body, response),
        last_page=_page_number(pagination, links.get("last")),
        next_url=links.get("next"),
        next_cursor=None if cursor in (None, "") else str(cursor),
        has_link_header="link" in response.headers,
    )


def next_request(pagination: Pagination, page: Page, page_size: int) -> PageRequest | None:
    """The request after `page` when pages follow one another; None after the last page.

    For `page` and `offset`, a `Link` header decides when the response has one; otherwise a
    page shorter than `page_size` is the last (so `page_size` must not exceed the API's own
    maximum when the API tells no total).
    """
    if not page.records:
        return None
    request = page.request
    index = request.index + 1
    if pagination.type == "cursor":
        if page.next_cursor is None:
            return None
        params = {**request.params, pagination.cursor_param: page.next_cursor}
        position = f"{pagination.cursor_param}={page.next_cursor}"
        return PageRequest(index=index, url=request.url, params=params, position=position)
    if pagination.type == "link":
        if page.next_url is None:
            return None
        return PageRequest(index=index, url=page.next_url, params={}, position=page.next_url)
    last = page.next_url is None if page.has_link_header else len(page.records) < page_size
    return None if last else _numbered(pagination, request, index, page_size)


def remaining_requests(pagination: Pagination, first: Page, page_size: int) -> list[PageRequest]:
    """Every request after `first` when the total is known from it; raises if it is not.

    A server that caps the page size below `page_size` is detected from the first page (fewer
    records than asked, yet more in total), and the pages are counted with its size.
    """
    size = page_size
    if first.total is not None and len(first.records) < min(page_size, first.total):
        size = len(first.records)
    if pagination.type == "page" and first.last_page is not None:
        count = first.last_page - pagination.first_page + 1
    elif first.total is not None and size > 0:
        count = math.ceil(first.total / size)
    else:
        raise ValueError("the total is not known")
    return [_numbered(pagination, first.request, index, size) for index in range(1, count)]


def knows_total(pagination: Pagination, first: Page) -> bool:
    """Whether `first` tells how many pages there are (so they can be fetched concurrently)."""
    if pagination.type not in ("page", "offset") or not first.records:
        return False
    return first.total is not None or (pagination.type == "page" and first.last_page is not None)


def _numbered(pagination: Pagination, request: PageRequest, index: int, size: int) -> PageRequest:
    if pagination.type == "page":
        number = pagination.first_page + index
        params = {**request.params, pagination.page_param: number}
        position = f"{pagination.page_param}={number}"
    else:
        params = {**request.params, pagination.offset_param: index * size}
        position = f"{pagination.offset_param}={index * size}"
    params[pagination.size_param] = size
    return PageRequest(index=index, url=request.url, params=params, position=position)


def _records(
    pagination: Pagination, request: PageRequest, body: Any, response: httpx.Response
) -> list[Record]:
    path = pagination.records_path
    found = body if not path else _dig(body, path, missing=_MISSING)
    where = f"GET {response.request.url} ({request.describe()})"
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


def _total(pagination: Pagination, body: Any, response: httpx.Response) -> int | None:
    raw = (
        _dig(body, pagination.total_path)
        if pagination.total_path
        else response.headers.get(pagination.total_header)
    )
    try:
        return None if raw is None else int(raw)
    except (TypeError, ValueError):
        return None


def _page_number(pagination: Pagination, url: str | None) -> int | None:
    if url is None:
        return None
    value = httpx.URL(url).params.get(pagination.page_param)
    return int(value) if value is not None and value.isdigit() else None


_MISSING = object()


def _dig(body: Any, path: str, missing: Any = None) -> Any:
    """The value at dotted `path` in `body`, or `missing`."""
    value = body
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return missing
        value = value[part]
    return value
