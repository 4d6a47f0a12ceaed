"""Plan a CSV import: fingerprint the file, read its header, cut it into chunks of records.

One streaming pass reads the file in blocks: it hashes every byte (sha256, the import's
fingerprint), checks that every byte decodes in the declared encoding, and finds record
boundaries with the same scan the chunk tasks use, so each chunk is a byte range that starts on
a record boundary even when quoted values hold line breaks. Everything structural (missing or
empty file, undecodable bytes, unbalanced quotes, a bad header) is found here, before anything
is written.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pydantic import BaseModel

from tasks.errors import CsvFormatError, InputError
from tasks.imports.csv_scan import Records, UnclosedQuote, field_at, scan_records
from tasks.imports.source_roots import check_source_root

BLOCK_SIZE = 4 * 1024 * 1024
# Without a chunk_size the plan cuts pieces of about this many bytes; automatic sizing joins
# them into chunks. Small enough to size chunks finely, few enough (about 4,000 per GB) to plan.
PIECE_BYTES = 256 * 1024
UTF8_BOM = codecs.BOM_UTF8
# Encodings (Python's canonical names) in which every byte below 0x80 is that ASCII character,
# so the byte-level scan finds quotes, delimiters and line breaks where they really are:
# single-byte ASCII supersets and EUC. UTF-7, UTF-16, GBK, Big5, Shift-JIS, GB18030 ... hide
# ASCII bytes inside characters and are refused.
_SCANNABLE = re.compile(
    r"(utf-8|ascii|iso8859-\d+|cp125[0-8]|cp437|cp85[0-8]|cp866|koi8-[ru]"
    r"|mac-roman|euc_jp|euc_kr|gb2312)"
)


class CsvDialect(BaseModel):
    """How the file is written: delimiter, encoding and whether line 1 names the columns."""

    delimiter: str = ","
    encoding: str = "utf-8"
    header: bool = True

    @property
    def delimiter_byte(self) -> int:
        return ord(self.delimiter)

    @property
    def is_utf8(self) -> bool:
        return codecs.lookup(self.encoding).name in ("utf-8", "utf-8-sig")


class ChunkSpec(BaseModel):
    """A byte range of whole records; `first_line` is the physical line at `start` (1-based).

    The planning pass cuts the file into pieces of this shape (`FilePlan.chunks`); the import
    then joins consecutive pieces into the chunks its tasks run (tasks/imports/sizing.py).
    """

    index: int
    start: int
    end: int
    first_line: int
    first_row: int
    rows: int

    @property
    def last_row(self) -> int:
        return self.first_row + self.rows - 1

    @property
    def label(self) -> str:
        """The chunk's task run name: which rows, and its size in rows and bytes."""
        return (
            f"chunk-{self.index:04d} [rows {self.first_row}-{self.last_row}] "
            f"{self.rows:,} rows, {(self.end - self.start) / 1e6:.1f} MB"
        )


class FilePlan(BaseModel):
    """What the planning pass learnt about a CSV file; `chunks` tile its records in order."""

    path: str
    size: int
    mtime_ns: int
    fingerprint: str
    header: list[str]
    total_rows: int
    chunks: list[ChunkSpec]


def local_path(source: str) -> Path:
    """The local file a `source` parameter names (a path or a file:// URL)."""
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("http", "https", "s3", "gs", "az"):
        raise InputError(
            f"parameter 'source': {source!r}: only local paths and file:// URLs are supported; "
            "download the file first"
        )
    return Path(source)


def check_dialect(dialect: CsvDialect) -> None:
    """Refuse dialects the byte-level scan cannot read, naming the parameter at fault."""
    try:
        name = codecs.lookup(dialect.encoding).name
    except (LookupError, ValueError) as exc:
        raise InputError(
            f"parameter 'encoding': unknown encoding {dialect.encoding[:100]!r} (give e.g. "
            "utf-8, latin-1 or cp1252)"
        ) from exc
    if not _SCANNABLE.fullmatch(name):
        raise InputError(
            f"parameter 'encoding': {dialect.encoding!r} is not supported: only encodings that "
            "keep ASCII bytes as ASCII (utf-8 with or without BOM, ascii, latin-1 and the other "
            "iso8859-N, cp1250-cp1258, koi8-r, euc-jp ...); convert the file to utf-8 first "
            "(for example with iconv)"
        )
    if (
        len(dialect.delimiter) != 1
        or dialect.delimiter in '"\r\n'
        or not dialect.delimiter.isascii()
    ):
        raise InputError(
            f"parameter 'delimiter': {dialect.delimiter!r} must be one ASCII character other "
            "than a quote or a line break"
        )


def plan_file(
    source: str,
    dialect: CsvDialect,
    chunk_size: int | None,
    columns: list[str] | None = None,
    *,
    piece_bytes: int | None = None,
) -> FilePlan:
    """Read `source` once and return its fingerprint, header and byte ranges of records.

    With a `chunk_size` each range holds that many rows; without one each range ends on the
    first record boundary at or after `piece_bytes` bytes (default PIECE_BYTES), a piece
    that automatic sizing joins into chunks.
    """
    check_dialect(dialect)
    if chunk_size is not None and chunk_size < 1:
        raise InputError(f"parameter 'chunk_size': {chunk_size} must be at least 1")
    path = check_source_root(local_path(source))
    if not path.is_file():
        raise InputError(f"parameter 'source': {path} does not exist or is not a file")
    stat = path.stat()
    size = stat.st_size
    if size == 0:
        raise CsvFormatError(str(path), "the file is empty; expected a header line", line=1)
    planner = _Planner(path, dialect, chunk_size, piece_bytes or PIECE_BYTES)
    header = planner.run()
    if dialect.header:
        if header is None:
            raise CsvFormatError(str(path), "the file has no header line", line=1)
        names = _parse_header(path, header, dialect)
    else:
        if not columns:
            raise InputError("parameter 'columns': required when header=False")
        names = list(columns)
    return FilePlan(
        path=str(path),
        size=size,
        mtime_ns=stat.st_mtime_ns,
        fingerprint=f"sha256:{planner.sha.hexdigest()}",
        header=names,
        total_rows=planner.rows,
        chunks=planner.chunks,
    )


class _Planner:
    """State of the single planning pass over the file."""

    def __init__(
        self, path: Path, dialect: CsvDialect, chunk_size: int | None, piece_bytes: int
    ) -> None:
        self.path = path
        self.dialect = dialect
        self.chunk_size = chunk_size
        self.piece_bytes = piece_bytes
        self.sha = hashlib.sha256()
        self.decoder = codecs.getincrementaldecoder(dialect.encoding)("strict")
        self.rows = 0
        self.closed_rows = 0
        self.chunks: list[ChunkSpec] = []
        self.header: bytes | None = None
        self.need_header = dialect.header
        # The open chunk: where it starts, its first line and how many rows it has so far.
        self.chunk_start = 0
        self.chunk_line = 1
        self.chunk_rows = 0

    def run(self) -> bytes | None:
        # The hash runs in a thread beside the scan (hashlib releases the GIL), one block
        # behind at most.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan-sha256") as hasher:
            hashed: Future[None] | None = None
            for block in self._scan():
                if hashed is not None:
                    hashed.result()
                hashed = hasher.submit(self.sha.update, block)
        return self.header

    def _scan(self) -> Iterator[bytes]:
        """Scan the file block by block, yielding each block as read, for the hash."""
        carry = b""
        offset = 0  # file offset of carry[0], always a record boundary
        line = 1  # physical line number at `offset`
        with self.path.open("rb") as handle:
            first = True
            while True:
                block = handle.read(BLOCK_SIZE)
                final = not block or not handle.peek(1)
                yield block
                if first:
                    first = False
                    if self.dialect.is_utf8 and block.startswith(UTF8_BOM):
                        block = block[len(UTF8_BOM) :]
                        offset = self.chunk_start = len(UTF8_BOM)
                buf = carry + block
                self._check_encoding(block, buf, len(carry), offset, line, final=final)
                try:
                    records = scan_records(
                        buf, self.dialect.delimiter_byte, final=final, count_fields=False
                    )
                except UnclosedQuote as exc:
                    raise self._unclosed(buf, exc, line) from None
                self._take(records, buf, offset, line)
                carry = buf[records.consumed :]
                offset += records.consumed
                line += records.newlines_consumed
                if final:
                    break
        self._close_chunk(end=offset + len(carry), next_line=line)

    def _take(self, records: Records, buf: bytes, offset: int, line: int) -> None:
        starts, ends = records.starts, records.ends
        if self.need_header and len(starts):
            self.need_header = False
            self.header = buf[starts[0] : records.content_ends[0]]
            self.chunk_start = offset + int(ends[0])
            self.chunk_line = line + int(np.searchsorted(records.feeds, ends[0]))
            starts, ends = starts[1:], ends[1:]
        count = len(starts)
        if count == 0:
            return
        taken = 0
        for cut in self._cuts(ends, offset, count):
            end = int(ends[cut])
            self.chunk_rows += int(cut) + 1 - taken
            taken = int(cut) + 1
            self._close_chunk(
                end=offset + end,
                next_line=line + int(np.searchsorted(records.feeds, end)),
            )
        self.chunk_rows += count - taken
        self.rows += count

    def _cuts(self, ends: npt.NDArray[np.int64], offset: int, count: int) -> Iterator[int]:
        """Indices of the records that complete a range, in this buffer, in order."""
        if self.chunk_size is not None:
            first_cut = self.chunk_size - self.chunk_rows - 1
            yield from (int(cut) for cut in np.arange(first_cut, count, self.chunk_size))
            return
        cut = -1
        while True:
            # The first record ending at or after piece_bytes from the open range's start;
            # self.chunk_start has moved on to the last cut when this resumes.
            target = self.chunk_start + self.piece_bytes - offset
            cut = max(int(np.searchsorted(ends, target, side="left")), cut + 1)
            if cut >= count:
                return
            yield cut

    def _close_chunk(self, end: int, next_line: int) -> None:
        if self.chunk_rows:
            self.chunks.append(
                ChunkSpec(
                    index=len(self.chunks),
                    start=self.chunk_start,
                    end=end,
                    first_line=self.chunk_line,
                    first_row=self.closed_rows + 1,
                    rows=self.chunk_rows,
                )
            )
            self.closed_rows += self.chunk_rows
        self.chunk_start = end
        self.chunk_line = next_line
        self.chunk_rows = 0

    def _check_encoding(
        self, block: bytes, buf: bytes, block_at: int, offset: int, line: int, *, final: bool
    ) -> None:
        # A UTF-8 block that holds whole characters only is checked by Arrow, three times as
        # fast; any other block (one that splits a character, or holds a bad byte, or follows
        # one that split a character) goes through the decoder, which places the error.
        if self.dialect.is_utf8 and not self.decoder.getstate()[0] and _utf8_whole(block):
            return
        try:
            self.decoder.decode(block, final)
        except UnicodeDecodeError as exc:
            # exc.start counts from bytes the decoder kept back from the previous block.
            kept = len(exc.object) - len(block)
            position = max(block_at + exc.start - kept, 0)
            bad = exc.object[exc.start : exc.end]
            bad_line = line + buf.count(b"\n", 0, position)
            field = field_at(buf, position, self.dialect.delimiter_byte)
            column = self._column(field)
            raise CsvFormatError(
                str(self.path),
                f"{column}: bytes {bad.hex(' ')} are not valid {self.dialect.encoding} "
                f"(byte offset {offset + position}); pass the file's real encoding, "
                "e.g. encoding='latin-1'",
                line=bad_line,
            ) from None

    def _column(self, field: int) -> str:
        """How an error names field `field`: by its header name when the file has one."""
        names: list[str] = []
        if self.dialect.header:
            with self.path.open("rb") as handle:
                head = handle.read(BLOCK_SIZE).removeprefix(UTF8_BOM)
            first = scan_records(head, self.dialect.delimiter_byte, final=False, count_fields=False)
            if len(first):
                raw = head[first.starts[0] : first.content_ends[0]]
                names = next(csv.reader([raw.decode(self.dialect.encoding, "replace")]))
        if field <= len(names):
            return f'column "{names[field - 1].strip()}"'
        return f"field {field}"

    def _unclosed(self, buf: bytes, exc: UnclosedQuote, line: int) -> CsvFormatError:
        bad_line = line + buf.count(b"\n", 0, exc.record_start)
        column = self._column(exc.field)
        return CsvFormatError(
            str(self.path),
            f"{column}: a quoted value is never closed (unbalanced quotes); "
            "every opening quote needs a closing one",
            line=bad_line,
        )


def _utf8_whole(data: bytes) -> bool:
    """Whether `data` is valid UTF-8 that ends on a character boundary."""
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    text = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _parse_header(path: Path, raw: bytes, dialect: CsvDialect) -> list[str]:
    try:
        text = raw.decode(dialect.encoding)
    except UnicodeDecodeError as exc:
        raise CsvFormatError(str(path), f"header is not valid {dialect.encoding}", line=1) from exc
    names = [
        name.strip() for name in next(csv.reader(io.StringIO(text), delimiter=dialect.delimiter))
    ]
    seen: set[str] = set()
    for number, name in enumerate(names, start=1):
        if not name:
            raise CsvFormatError(str(path), f"header field {number} has no column name", line=1)
        if name in seen:
            raise CsvFormatError(str(path), f'header names column "{name}" twice', line=1)
        seen.add(name)
    return names
