"""Hostile cells: a NUL byte is one rejected row on PostgreSQL, and a huge field is clipped in
the reject instead of being copied whole."""

from __future__ import annotations

import pyarrow as pa

from tasks.db.schema import ColumnSpec, Kind, TableSpec
from tasks.imports.csv_parse import RAW_TEXT_LIMIT, Reject
from tasks.imports.validation import validate


def _spec(dialect: str) -> TableSpec:
    column = ColumnSpec(
        name="name", kind=Kind.STRING, sql_type="text", nullable=True, has_default=False
    )
    return TableSpec(schema_name=None, name="t", dialect=dialect, columns=[column], unique_keys=[])


def test_a_nul_byte_rejects_its_row_only_on_postgresql() -> None:
    strings = pa.table({"name": pa.array(["ok", "bad\x00name", None], pa.string())})
    result = validate(strings, _spec("postgresql"), {}, set())
    assert result.valid.tolist() == [True, False, True]
    assert result.errors == {
        1: {"name": '"bad\\x00name" contains a NUL byte (\\x00), which PostgreSQL text cannot hold'}
    }
    assert validate(strings, _spec("sqlite"), {}, set()).valid.tolist() == [True, True, True]


def test_a_reject_keeps_a_clipped_raw_text_without_nul_bytes() -> None:
    huge = "1," + "x" * 5_000_000 + "\x00"
    reject = Reject(line=7, raw=huge, errors={"name": "too long"})
    assert reject.raw.startswith("1,xxx")
    assert reject.raw.endswith("(5,000,003 characters, cut at 1,000)")
    assert len(reject.raw) < RAW_TEXT_LIMIT + 60
    assert Reject(line=2, raw="a\x00b", errors={}).raw == "a\\x00b"
