"""Parse one chunk's byte range into string columns, keeping every record's line and raw text.

The scan (csv_scan.py) finds the records and rejects the malformed ones (wrong number of
fields, stray quotes); only well-formed records go to pyarrow's C++ parser, so row i of the
parsed table is exactly the i-th good record, whose physical line and raw text stay known.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from tasks.imports.arrays import BoolArray, IntArray
from tasks.imports.csv_plan import ChunkSpec, CsvDialect
from tasks.imports.csv_scan import CR, QUOTE, Records, scan_records

# A reject keeps this much of its row's raw text (in batchflows_rejects and the artifact): the
# line number points to the whole row in the file, and one huge field must not be copied whole.
RAW_TEXT_LIMIT = 1_000


def clip_raw(text: str) -> str:
    """`text` as a reject stores it: NUL bytes spelled `\\x00` (PostgreSQL text cannot hold
    them), and at most RAW_TEXT_LIMIT characters plus a note of the full length."""
    shown = text[:RAW_TEXT_LIMIT].replace("\x00", "\\x00")
    if len(text) > RAW_TEXT_LIMIT:
        shown += f"... ({len(text):,} characters, cut at {RAW_TEXT_LIMIT:,})"
    return shown


@dataclass(frozen=True)
class Reject:
    """A row that will not be written: its physical line, raw text (clipped) and reasons."""

    line: int
    raw: str
    errors: dict[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", clip_raw(self.raw))


@dataclass
class ParsedChunk:
    """Well-formed records as string columns, with their lines and a way back to the raw text."""

    strings: pa.Table
    lines: IntArray
    rows: int
    rejects: list[Reject] = field(default_factory=list)
    _data: bytes = b""
    _starts: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _content_ends: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _ends: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _encoding: str = "utf-8"

    def raw(self, row: int) -> str:
        """The raw text of good record `row`, without its line terminator."""
        text = self._data[self._starts[row] : self._content_ends[row]]
        return text.decode(self._encoding, errors="replace")

    def records_bytes(self, rows: IntArray) -> bytes:
        """The original bytes of good records `rows` (ascending), terminators included.

        Adjacent records are copied as one slice, so keeping most of a chunk costs a few
        slices, not one per row.
        """
        if len(rows) == 0:
            return b""
        starts, ends = self._starts[rows], self._ends[rows]
        breaks = np.flatnonzero(starts[1:] != ends[:-1]) + 1
        run_starts = starts[np.concatenate(([0], breaks))]
        run_ends = ends[np.concatenate((breaks - 1, [len(rows) - 1]))]
        view = memoryview(self._data)
        return b"".join(
            view[a:b] for a, b in zip(run_starts.tolist(), run_ends.tolist(), strict=True)
        )


def read_range(path: str, start: int, end: int) -> bytes:
    """Bytes [start, end) of a file: a chunk reads only its own range."""
    with Path(path).open("rb") as handle:
        handle.seek(start)
        return handle.read(end - start)


def parse_chunk(
    data: bytes, chunk: ChunkSpec, header: list[str], used: list[str], dialect: CsvDialect
) -> ParsedChunk:
    """Split `data` (the chunk's bytes) into good records parsed as strings, and rejects."""
    records = scan_records(data, dialect.delimiter_byte, final=True)
    lines = chunk.first_line + records.lines
    expected = len(header)
    good = records.field_counts == expected
    for index in records.problems:
        good[index] = False
    split = _split_by_carriage_return(data, records, good, header, dialect)
    good[list(split)] = False
    rejects = [
        Reject(
            line=int(lines[i]),
            raw=data[records.starts[i] : records.content_ends[i]].decode(
                dialect.encoding, errors="replace"
            ),
            errors=split.get(i) or _structural_errors(records, i, header),
        )
        for i in np.flatnonzero(~good).tolist()
    ]
    good_index = np.flatnonzero(good)
    strings = _parse(_good_bytes(data, records, good), header, used, dialect)
    if strings.num_rows != len(good_index):
        raise AssertionError(
            f"chunk {chunk.index}: the scan found {len(good_index)} good records but pyarrow "
            f"parsed {strings.num_rows}; please report this file"
        )
    return ParsedChunk(
        strings=strings,
        lines=lines[good_index],
        rows=len(records),
        rejects=rejects,
        _data=data,
        _starts=records.starts[good_index],
        _content_ends=records.content_ends[good_index],
        _ends=records.ends[good_index],
        _encoding=dialect.encoding,
    )


def _split_by_carriage_return(
    data: bytes,
    records: Records,
    good: BoolArray,
    header: list[str],
    dialect: CsvDialect,
) -> dict[int, dict[str, str]]:
    """Good records with a carriage return inside that pyarrow would read as more than one
    record (a bare CR outside quotes ends a line for it); found with a vectorised search, so
    files without such bytes pay nothing. A CR inside a quoted field never splits a record,
    so only records with a CR at even quote parity are parsed again on their own.
    Returns their index -> reject reason."""
    if b"\r" not in data:
        return {}
    arr = np.frombuffer(data, dtype=np.uint8)
    positions = np.flatnonzero(arr == CR)
    owner = np.searchsorted(records.starts, positions, side="right") - 1
    inside = (owner >= 0) & (positions < records.content_ends[np.maximum(owner, 0)])
    positions, owner = positions[inside], owner[inside]
    quotes = np.flatnonzero(arr == QUOTE)
    quoted_before = np.searchsorted(quotes, positions) - np.searchsorted(
        quotes, records.starts[owner]
    )
    split: dict[int, dict[str, str]] = {}
    for index in np.unique(owner[quoted_before % 2 == 0]).tolist():
        if not good[index]:
            continue
        record = data[records.starts[index] : records.content_ends[index]] + b"\n"
        try:
            rows = _parse(record, header, header, dialect).num_rows
        except pa.ArrowInvalid:
            rows = 0
        if rows != 1:
            split[index] = {
                "_record": "a carriage return outside quotes splits this record; quote the "
                "field or end every line the same way"
            }
    return split


def _structural_errors(records: Records, index: int, header: list[str]) -> dict[str, str]:
    problem = records.problems.get(index)
    if problem is not None:
        name = (
            header[problem.field - 1] if problem.field <= len(header) else f"field {problem.field}"
        )
        return {name: problem.message}
    found = int(records.field_counts[index])
    return {"_record": f"has {found} fields, but the header has {len(header)}"}


def _good_bytes(data: bytes, records: Records, good: BoolArray) -> bytes:
    """`data` without the bytes of bad records (blank lines may stay: pyarrow skips them)."""
    if good.all():
        return data
    bad = np.flatnonzero(~good)
    view = memoryview(data)
    keep_from = np.concatenate(([0], records.ends[bad]))
    keep_to = np.concatenate((records.starts[bad], [len(data)]))
    return b"".join(view[a:b] for a, b in zip(keep_from.tolist(), keep_to.tolist(), strict=True))


def _parse(data: bytes, header: list[str], used: list[str], dialect: CsvDialect) -> pa.Table:
    if not data.strip():
        return pa.table({name: pa.array([], pa.string()) for name in used})
    return pa_csv.read_csv(
        io.BytesIO(data),
        read_options=pa_csv.ReadOptions(
            column_names=header,
            use_threads=False,
            block_size=max(len(data) + 1, 1 << 20),
            encoding="utf8" if dialect.is_utf8 else dialect.encoding,
        ),
        parse_options=pa_csv.ParseOptions(
            delimiter=dialect.delimiter, newlines_in_values=True, ignore_empty_lines=True
        ),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            include_columns=used,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
        ),
    )
