"""Parsing a chunk: good records become string columns, bad ones rejects with line and raw."""

from __future__ import annotations

import numpy as np

from tasks.imports.csv_parse import parse_chunk
from tasks.imports.csv_plan import ChunkSpec, CsvDialect

HEADER = ["id", "name", "note"]


def _chunk(first_line: int = 2) -> ChunkSpec:
    return ChunkSpec(index=0, start=0, end=0, first_line=first_line, first_row=1, rows=0)


def test_empty_unquoted_is_null_and_quoted_empty_is_empty_string() -> None:
    parsed = parse_chunk(b'1,,""\n', _chunk(), HEADER, HEADER, CsvDialect())
    assert parsed.strings.to_pylist() == [{"id": "1", "name": None, "note": ""}]


def test_wrong_field_count_and_stray_quote_become_rejects_with_lines() -> None:
    data = b'1,a,b\n2,"x\ny",z\n3,a,b,extra\n4,5" tall,c\n5,e,f\n'
    parsed = parse_chunk(data, _chunk(first_line=10), HEADER, HEADER, CsvDialect())
    assert parsed.rows == 5
    assert parsed.strings.column("id").to_pylist() == ["1", "2", "5"]
    assert parsed.lines.tolist() == [10, 11, 15]
    assert [(r.line, r.raw) for r in parsed.rejects] == [
        (13, "3,a,b,extra"),
        (14, '4,5" tall,c'),
    ]
    assert parsed.rejects[0].errors == {"_record": "has 4 fields, but the header has 3"}
    assert "stray quote" in parsed.rejects[1].errors["name"]


def test_raw_text_of_good_records_keeps_embedded_newlines() -> None:
    parsed = parse_chunk(b'1,"a\r\nb",c\r\n', _chunk(), HEADER, HEADER, CsvDialect())
    assert parsed.raw(0) == '1,"a\r\nb",c'
    assert parsed.strings.column("name").to_pylist() == ["a\r\nb"]


def test_records_bytes_returns_original_records_of_chosen_rows() -> None:
    data = b'1,a,b\n\n2,"x\ny",z\n3,bad\n4,c,d'
    parsed = parse_chunk(data, _chunk(), HEADER, HEADER, CsvDialect())
    assert parsed.records_bytes(np.array([0, 1, 2])) == b'1,a,b\n2,"x\ny",z\n4,c,d'
    assert parsed.records_bytes(np.array([1])) == b'2,"x\ny",z\n'


def test_unused_columns_are_not_kept() -> None:
    parsed = parse_chunk(b"1,a,b\n", _chunk(), HEADER, ["id", "note"], CsvDialect())
    assert parsed.strings.column_names == ["id", "note"]


def test_semicolon_files() -> None:
    parsed = parse_chunk(b'1;"a;b";c\n', _chunk(), HEADER, HEADER, CsvDialect(delimiter=";"))
    assert parsed.strings.column("name").to_pylist() == ["a;b"]


def test_a_bare_carriage_return_outside_quotes_rejects_only_its_record() -> None:
    # Found by tests/faults/test_fuzzed_csv.py: pyarrow ends a line at a bare CR, the
    # scanner does not, so ",,\r0" would have become two records and failed the chunk.
    data = b',,\r0\n1,2,3\n"a\rb",1,2\r\n'
    chunk = ChunkSpec(index=0, start=0, end=len(data), first_line=2, first_row=1, rows=3)
    parsed = parse_chunk(data, chunk, ["k", "n", "s"], ["k", "n", "s"], CsvDialect())
    assert parsed.strings.to_pylist() == [
        {"k": "1", "n": "2", "s": "3"},
        {"k": "a\rb", "n": "1", "s": "2"},
    ]
    (reject,) = parsed.rejects
    assert (reject.line, reject.raw) == (2, ",,\r0")
    assert "carriage return outside quotes" in reject.errors["_record"]


def test_quote_parity_tells_a_quoted_carriage_return_from_a_bare_one() -> None:
    # Only a CR outside quotes (an even number of quotes before it in its record) can split
    # a record, so only those records are parsed again on their own.
    data = b'"a""b\rc",1,2\n"a",1\r,2\n'
    chunk = ChunkSpec(index=0, start=0, end=len(data), first_line=2, first_row=1, rows=2)
    parsed = parse_chunk(data, chunk, ["k", "n", "s"], ["k", "n", "s"], CsvDialect())
    assert parsed.strings.to_pylist() == [{"k": 'a"b\rc', "n": "1", "s": "2"}]
    (reject,) = parsed.rejects
    assert (reject.line, reject.raw) == (3, '"a",1\r,2')
