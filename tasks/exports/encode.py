"""Rows to bytes: csv, ndjson and json fragments that concatenate, and Arrow batches for parquet.

Values keep their meaning: NULL is an empty unquoted csv field and an empty string a quoted one
(`""`), as import-csv reads them; JSON has `null` for NULL, decimals as strings (no float
damage), timestamps as ISO-8601 with their offset; non-ASCII text stays as is (UTF-8).
A json part is its objects joined by commas, without brackets, so parts can be stitched into one
array; a csv part has no header, which the flow writes once.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import pyarrow as pa
import pyarrow.compute as pc

_CSV_SPECIAL = frozenset(',"\r\n')
Piece = TypeVar("Piece")


def csv_field(value: object) -> str:
    """One RFC 4180 field: NULL empty and unquoted, the empty string `""`."""
    if value is None:
        return ""
    text = scalar_text(value)
    if text == "" or not _CSV_SPECIAL.isdisjoint(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def scalar_text(value: object) -> str:
    """The text of a value as the database would print it in csv (decimals without exponent)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


def csv_line(values: Sequence[object]) -> str:
    """One csv record with its CRLF-free line end."""
    return ",".join(csv_field(value) for value in values) + "\n"


def csv_rows(rows: Iterable[Sequence[object]]) -> bytes:
    """A batch of rows as csv lines, UTF-8."""
    return "".join(csv_line(row) for row in rows).encode()


def json_value(value: object) -> Any:
    """A value JSON can carry without losing it (json.dumps `default` hook)."""
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID | timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"cannot export a {type(value).__name__} value as JSON")


def json_object(names: Sequence[str], values: Sequence[object]) -> str:
    """One row as a JSON object (non-finite floats, which JSON lacks, as strings)."""
    record = {
        name: str(value) if isinstance(value, float) and not math.isfinite(value) else value
        for name, value in zip(names, values, strict=True)
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=json_value)


class JsonEncoder:
    """Encodes batches of one part: ndjson lines, or json objects joined by commas."""

    def __init__(self, names: Sequence[str], array: bool) -> None:
        self.names = list(names)
        self.array = array
        self.started = False

    def encode(self, rows: Iterable[Sequence[object]]) -> bytes:
        objects = [json_object(self.names, row) for row in rows]
        if not objects:
            return b""
        if not self.array:
            return ("\n".join(objects) + "\n").encode()
        lead = ",\n" if self.started else ""
        self.started = True
        return (lead + ",\n".join(objects)).encode()


def framed(parts: Sequence[tuple[Piece, bool]], format: str, header: bytes) -> list[Piece | bytes]:
    """The whole file's pieces in order: the parts (each with whether it has rows) and the
    framing around them: csv's header line, json's brackets and commas between non-empty parts.
    """
    if format == "csv":
        return [header, *(part for part, _ in parts)]
    if format != "json":
        return [part for part, _ in parts]
    pieces: list[Piece | bytes] = [b"["]
    seen = False
    for part, non_empty in parts:
        if non_empty and seen:
            pieces.append(b",\n")
        pieces.append(part)
        seen = seen or non_empty
    pieces.append(b"]\n")
    return pieces


def arrow_schema(schema: pa.Schema) -> pa.Schema:
    """The parquet schema for an ADBC PostgreSQL result: numeric as decimal128(p, s) when the
    column declares a precision, other opaque types as their text; field metadata dropped."""
    fields = []
    for field in schema:
        fields.append(pa.field(field.name, _arrow_type(field), nullable=True))
    return pa.schema(fields)


def _arrow_type(field: pa.Field) -> pa.DataType:
    metadata = field.metadata or {}
    typmod = int(metadata.get(b"POSTGRESQL:typmod", b"-1"))
    if metadata.get(b"POSTGRESQL:type") == b"numeric" and typmod >= 4:
        precision, scale = (typmod - 4) >> 16, (typmod - 4) & 0xFFFF
        if precision <= 38:
            return pa.decimal128(precision, scale)
    storage: pa.DataType | None = getattr(field.type, "storage_type", None)
    return storage or field.type


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """`batch` with the columns cast to `schema` (opaque numerics parsed as decimals)."""
    columns = []
    for column, field in zip(batch.columns, schema, strict=True):
        array = column.storage if isinstance(column, pa.ExtensionArray) else column
        columns.append(array if array.type == field.type else pc.cast(array, field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def rows_schema(names: Sequence[str], rows: Sequence[Sequence[object]]) -> pa.Schema:
    """A parquet schema for untyped rows (SQLite): each column's type from its first batch;
    a column of only NULLs, or of mixed types, is text."""
    fields = []
    for index, name in enumerate(names):
        kinds = {type(row[index]) for row in rows if row[index] is not None}
        fields.append(pa.field(name, _python_type(kinds)))
    return pa.schema(fields)


def _python_type(kinds: set[type]) -> pa.DataType:
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds and kinds <= {int, float}:
        return pa.float64()
    if kinds == {bytes}:
        return pa.binary()
    return pa.string()


def rows_batch(rows: Sequence[Sequence[object]], schema: pa.Schema) -> pa.RecordBatch:
    """Untyped rows as a batch of `schema` (values of a text column turned into text)."""
    columns = []
    for index, field in enumerate(schema):
        values = [row[index] for row in rows]
        if field.type == pa.string():
            values = [None if v is None else scalar_text(v) for v in values]
        columns.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)
