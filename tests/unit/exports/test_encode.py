"""Encoding rows as csv and JSON fragments, and Arrow types for parquet."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from tasks.exports.encode import (
    JsonEncoder,
    arrow_schema,
    conform_batch,
    csv_line,
    csv_rows,
    framed,
    rows_batch,
    rows_schema,
)

ROWS: list[tuple[object, ...]] = [
    (1, None, "", 'Zoë, "the" one\r\nline 2', Decimal("12345678901234567890.01"), True),
    (2, "李雷", " spaced ", "plain", Decimal("0.10"), False),
]


def test_csv_keeps_null_apart_from_empty_and_quotes_per_rfc_4180() -> None:
    assert csv_line([None, "", "a,b", 'say "hi"', "x\ny"]) == (',"","a,b","say ""hi""","x\ny"\n')
    text = csv_rows(ROWS).decode()
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[0] == ["1", "", "", 'Zoë, "the" one\r\nline 2', "12345678901234567890.01", "true"]
    assert parsed[1] == ["2", "李雷", " spaced ", "plain", "0.10", "false"]
    assert text.startswith('1,,"",')


def test_csv_prints_timestamps_with_offset_and_decimals_without_exponent() -> None:
    moment = datetime(2024, 5, 1, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    assert csv_line([moment, date(2024, 5, 1), Decimal("1E+3")]) == (
        "2024-05-01T10:30:00+02:00,2024-05-01,1000\n"
    )


def test_ndjson_objects_keep_types_exactly() -> None:
    encoder = JsonEncoder(["id", "a", "b", "c", "d", "e"], array=False)
    lines = encoder.encode(ROWS).decode().splitlines()
    first = json.loads(lines[0])
    assert first == {
        "id": 1,
        "a": None,
        "b": "",
        "c": 'Zoë, "the" one\r\nline 2',
        "d": "12345678901234567890.01",
        "e": True,
    }
    assert "李雷" in lines[1]
    moment = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    line = JsonEncoder(["t", "f"], array=False).encode([(moment, float("nan"))])
    assert json.loads(line) == {"t": "2024-05-01T08:30:00+00:00", "f": "nan"}


def test_json_parts_stitch_into_one_array_with_commas_only_between_non_empty_parts() -> None:
    names = ["id"]
    parts: list[tuple[bytes, bool]] = []
    for rows in ([(1,), (2,)], [], [(3,)], []):
        encoder = JsonEncoder(names, array=True)
        data = encoder.encode(rows[:1]) + encoder.encode(rows[1:])
        parts.append((data, bool(rows)))
    pieces = framed(parts, "json", b"")
    assert json.loads(b"".join(pieces)) == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert json.loads(b"".join(framed([(b"", False)], "json", b""))) == []
    assert framed([(b"a", True)], "csv", b"h\n") == [b"h\n", b"a"]


def test_postgres_numeric_becomes_decimal128_from_its_typmod() -> None:
    numeric = pa.field(
        "score",
        pa.string(),
        metadata={"POSTGRESQL:type": "numeric", "POSTGRESQL:typmod": str(((8 << 16) | 2) + 4)},
    )
    schema = arrow_schema(pa.schema([numeric, pa.field("id", pa.int64())]))
    assert schema.field("score").type == pa.decimal128(8, 2)
    batch = pa.record_batch([pa.array(["12.34", None]), pa.array([1, 2])], names=["score", "id"])
    conformed = conform_batch(batch, schema)
    assert conformed.column(0).to_pylist() == [Decimal("12.34"), None]


def test_untyped_rows_get_one_schema_and_null_stays_distinct_from_empty() -> None:
    rows: list[tuple[object, ...]] = [(1, "", None, 1.5), (2, None, None, 2)]
    schema = rows_schema(["id", "s", "n", "x"], rows)
    assert [f.type for f in schema] == [pa.int64(), pa.string(), pa.string(), pa.float64()]
    assert rows_batch(rows, schema).column(1).to_pylist() == ["", None]


@given(st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"])), min_size=1))
def test_any_text_survives_a_csv_round_trip(values: list[str]) -> None:
    line = csv_line(values)
    assert next(csv.reader(io.StringIO(line, newline=""))) == values
    assert csv_line([*values, None]).endswith(",\n")
