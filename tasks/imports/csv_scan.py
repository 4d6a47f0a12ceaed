"""Find CSV record boundaries, field counts and quoting faults in raw bytes, vectorised.

The planner and every chunk task run the same scan, so they agree on where records start.
It follows RFC 4180: a record ends at a line feed outside quotes, i.e. after an even number of
quote characters counted from the record boundary. A quote must open a field (after a delimiter
or at a line start) or close one (before a delimiter, a line end or the end of data); doubled
quotes inside a quoted field are text. A quote anywhere else is a *stray quote*. Parsers
disagree on those (PostgreSQL opens a quoted section, pyarrow and Excel keep it as text), so
instead of guessing, the scan ends that record with its physical line and reports it as
malformed; counting restarts after it. Every byte thus belongs to exactly one record or blank
line, and a bad line never swallows the rest of the file.

Positions of quotes, line feeds and delimiters are found once with numpy and quote parity comes
from `searchsorted`, so there is no Python loop per byte or per record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.imports.arrays import ByteArray, IntArray

QUOTE = ord('"')
LF = ord("\n")
CR = ord("\r")


@dataclass(frozen=True)
class Problem:
    """Why a record is malformed: the 1-based field where its quoting breaks RFC 4180."""

    field: int
    message: str


@dataclass(frozen=True)
class Records:
    """The complete, non-blank records of a buffer, in order.

    `ends` point just past a record's line feed (or at the end of data) and `content_ends`
    exclude the line terminator. `lines` count the line feeds before each start (0-based line
    index) and `feeds` are the offsets of every line feed. `field_counts` is empty unless
    asked for; malformed records (`problems`, keyed by record index) have no meaningful count.
    """

    starts: IntArray
    content_ends: IntArray
    ends: IntArray
    lines: IntArray
    field_counts: IntArray
    problems: dict[int, Problem]
    consumed: int
    newlines_consumed: int
    feeds: IntArray

    def __len__(self) -> int:
        return len(self.starts)


class UnclosedQuote(Exception):
    """The data ends inside a quoted field of the record at `record_start` (field `field`)."""

    def __init__(self, record_start: int, field: int) -> None:
        self.record_start = record_start
        self.field = field
        super().__init__(f"quoted field in the record at byte {record_start} is never closed")


def scan_records(buf: bytes, delimiter: int, *, final: bool, count_fields: bool = True) -> Records:
    """Split `buf`, which starts at a record boundary, into records.

    With `final=False` the bytes after the last complete record are left for the next call
    (`consumed` says how many were used). With `final=True` the end of `buf` ends the last
    record, and a quote still open there raises `UnclosedQuote`.
    """
    arr = np.frombuffer(buf, dtype=np.uint8)
    size = len(arr)
    quotes = np.flatnonzero(arr == QUOTE)
    feeds = np.flatnonzero(arr == LF)

    starts: list[IntArray] = []
    ends: list[IntArray] = []
    problems: dict[int, Problem] = {}
    count = 0
    segment = 0  # a record boundary: quote parity restarts here
    while segment < size:
        q = quotes[np.searchsorted(quotes, segment) :]
        stray = _first_stray_quote(arr, q, segment, delimiter)
        limit = size if stray is None else int(q[stray])
        clean_q = q if stray is None else q[:stray]
        # Record ends: line feeds before `limit` that follow an even number of quotes.
        f = feeds[np.searchsorted(feeds, segment) : np.searchsorted(feeds, limit)]
        f = f[(np.searchsorted(clean_q, f) & 1) == 0].astype(np.int64)
        record_start = segment
        if len(f):
            starts.append(np.concatenate(([segment], f[:-1] + 1)).astype(np.int64))
            ends.append(f + 1)
            count += len(f)
            record_start = int(f[-1]) + 1
        if stray is None:
            if final and record_start < size:
                tail_quotes = clean_q[np.searchsorted(clean_q, record_start) :]
                if len(tail_quotes) % 2:
                    field = _field_at(arr, quotes, record_start, int(tail_quotes[-1]), delimiter)
                    raise UnclosedQuote(record_start, field)
                starts.append(np.array([record_start], dtype=np.int64))
                ends.append(np.array([size], dtype=np.int64))
                count += 1
                record_start = size
            segment = record_start
            break
        # A stray quote: the record it sits in ends with its physical line.
        position = int(q[stray])
        next_feed = int(np.searchsorted(feeds, position))
        if next_feed < len(feeds):
            record_end = int(feeds[next_feed]) + 1
        elif final:
            record_end = size
        else:
            segment = record_start
            break
        problems[count] = Problem(
            field=_field_at(arr, quotes, record_start, position, delimiter),
            message=_STRAY_OPENING if stray % 2 == 0 else _STRAY_CLOSING,
        )
        starts.append(np.array([record_start], dtype=np.int64))
        ends.append(np.array([record_end], dtype=np.int64))
        count += 1
        segment = record_end

    return _finish(
        arr,
        starts,
        ends,
        problems=problems,
        consumed=segment,
        feeds=feeds,
        quotes=quotes,
        delimiter=delimiter,
        count_fields=count_fields,
    )


_STRAY_OPENING = (
    "stray quote inside an unquoted value; quote the whole value and double the quotes "
    'inside it, e.g. "5"" screen"'
)
_STRAY_CLOSING = (
    "text after a closing quote; quote the whole value and double the quotes inside it, "
    'e.g. "5"" screen"'
)


def _first_stray_quote(arr: ByteArray, q: IntArray, segment: int, delimiter: int) -> int | None:
    """Index into `q` of the first quote that neither opens nor closes a field, if any.

    Quotes at even positions (counted from the segment start) would open a field, so they
    must follow a delimiter, a line start or another quote (the second half of `""`); quotes
    at odd positions would close one, so they must precede a delimiter, a line end, another
    quote or the end of the data.
    """
    if len(q) == 0:
        return None
    size = len(arr)
    opening = (np.arange(len(q)) & 1) == 0
    prev = arr[np.maximum(q - 1, 0)]
    prev_ok = (q == segment) | (prev == delimiter) | (prev == LF) | (prev == CR) | (prev == QUOTE)
    nxt = arr[np.minimum(q + 1, size - 1)]
    next_ok = (q + 1 >= size) | (nxt == delimiter) | (nxt == LF) | (nxt == CR) | (nxt == QUOTE)
    bad = np.flatnonzero((opening & ~prev_ok) | (~opening & ~next_ok))
    return int(bad[0]) if len(bad) else None


def field_at(buf: bytes, pos: int, delimiter: int) -> int:
    """1-based number of the field that byte `pos` of `buf` falls in (`buf` starts a record)."""
    head = buf[:pos]
    record_start = scan_records(head, delimiter, final=False, count_fields=False).consumed
    arr = np.frombuffer(head, dtype=np.uint8)
    return _field_at(arr, np.flatnonzero(arr == QUOTE), record_start, pos, delimiter)


def _field_at(arr: ByteArray, quotes: IntArray, record_start: int, pos: int, delimiter: int) -> int:
    """1-based number of the field that byte `pos` of a record falls in."""
    delims = record_start + np.flatnonzero(arr[record_start:pos] == delimiter)
    q = quotes[np.searchsorted(quotes, record_start) : np.searchsorted(quotes, pos)]
    outside = (np.searchsorted(q, delims) & 1) == 0
    return int(np.count_nonzero(outside)) + 1


def _finish(
    arr: ByteArray,
    starts_parts: list[IntArray],
    ends_parts: list[IntArray],
    *,
    problems: dict[int, Problem],
    consumed: int,
    feeds: IntArray,
    quotes: IntArray,
    delimiter: int,
    count_fields: bool,
) -> Records:
    empty = np.zeros(0, dtype=np.int64)
    starts = np.concatenate(starts_parts) if starts_parts else empty
    ends = np.concatenate(ends_parts) if ends_parts else empty
    content_ends = ends.copy()
    if len(ends):
        has_lf = arr[ends - 1] == LF
        content_ends -= has_lf
        has_cr = has_lf & (content_ends > starts) & (arr[np.maximum(content_ends - 1, 0)] == CR)
        content_ends -= has_cr
    blank = content_ends == starts
    if blank.any():
        kept = np.flatnonzero(~blank)
        new_index = {int(old): new for new, old in enumerate(kept)}
        problems = {new_index[i]: p for i, p in problems.items() if i in new_index}
        starts, ends, content_ends = starts[kept], ends[kept], content_ends[kept]
    field_counts = (
        _field_counts(
            arr, starts, content_ends, quotes=quotes, delimiter=delimiter, problems=problems
        )
        if count_fields
        else empty
    )
    return Records(
        starts=starts,
        content_ends=content_ends,
        ends=ends,
        lines=np.searchsorted(feeds, starts).astype(np.int64),
        field_counts=field_counts,
        problems=problems,
        consumed=consumed,
        newlines_consumed=int(np.searchsorted(feeds, consumed)),
        feeds=feeds,
    )


def _field_counts(
    arr: ByteArray,
    starts: IntArray,
    content_ends: IntArray,
    *,
    quotes: IntArray,
    delimiter: int,
    problems: dict[int, Problem],
) -> IntArray:
    """Delimiters outside quotes per record, plus one.

    Every record starts at even quote parity, so within well-formed records quotes pair up as
    (opening, closing) regions and delimiters inside a region are text. Malformed records get
    an arbitrary count: their problem is reported instead.
    """
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64)
    delims = np.flatnonzero(arr == delimiter)
    total = np.searchsorted(delims, content_ends) - np.searchsorted(delims, starts)
    if problems:
        # Malformed records hold odd numbers of quotes; pair quotes record by record.
        first_q = np.searchsorted(quotes, starts)
        per_record = np.searchsorted(quotes, content_ends) - first_q
        rank = np.arange(per_record.sum()) - np.repeat(
            np.cumsum(per_record) - per_record, per_record
        )
        q = quotes[np.repeat(first_q, per_record) + rank]
        closing = np.flatnonzero((rank & 1) == 1)
        opens, closes = q[closing - 1], q[closing]
    else:
        q = quotes[starts[0] <= quotes]
        q = q[q < content_ends[-1]]
        opens, closes = q[0::2], q[1::2]
    inside = np.searchsorted(delims, closes) - np.searchsorted(delims, opens)
    owner = np.searchsorted(starts, opens, side="right") - 1
    inside_per_record = np.bincount(owner, weights=inside, minlength=len(starts))
    return (total - inside_per_record.astype(np.int64) + 1).astype(np.int64)
