"""The record scanner agrees with Python's csv module on valid CSV and isolates bad quoting."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.imports.csv_scan import UnclosedQuote, field_at, scan_records

COMMA = ord(",")

fields = st.text(alphabet='ab,"\r\n é', max_size=6)
tables = st.lists(st.lists(fields, min_size=3, max_size=3), min_size=1, max_size=8)
# Python's reader also counts a bare CR inside quotes as a line break; physical lines here
# end with LF (as `wc -l` counts them), so line numbers are compared on data without bare CR.
lf_fields = st.text(alphabet='ab,"\n é', max_size=6)
lf_tables = st.lists(st.lists(lf_fields, min_size=3, max_size=3), min_size=1, max_size=8)


def _write(rows: list[list[str]], terminator: str = "\r\n") -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator=terminator).writerows(rows)
    return out.getvalue().encode()


def _reference(data: bytes) -> list[tuple[int, list[str]]]:
    """(start line, fields) of each non-blank record, as Python's csv module reads them."""
    reader = csv.reader(io.StringIO(data.decode(), newline=""))
    records = []
    previous_end = 0
    for row in reader:
        if row:
            records.append((previous_end, row))
        previous_end = reader.line_num
    return records


@settings(max_examples=300, deadline=None)
@given(tables)
def test_records_and_fields_match_python_csv(rows: list[list[str]]) -> None:
    data = _write(rows)
    scanned = scan_records(data, COMMA, final=True)
    expected = _reference(data)
    assert len(scanned) == len(expected)
    assert scanned.field_counts.tolist() == [len(fields) for _, fields in expected]
    assert not scanned.problems


@settings(max_examples=200, deadline=None)
@given(lf_tables)
def test_record_lines_match_python_csv(rows: list[list[str]]) -> None:
    data = _write(rows, terminator="\n")
    scanned = scan_records(data, COMMA, final=True)
    assert scanned.lines.tolist() == [line for line, _ in _reference(data)]


@settings(max_examples=100, deadline=None)
@given(tables, st.integers(min_value=0, max_value=7))
def test_scanning_from_any_record_boundary_finds_the_same_records(
    rows: list[list[str]], first: int
) -> None:
    data = _write(rows)
    whole = scan_records(data, COMMA, final=True)
    first = min(first, len(whole) - 1)
    tail = scan_records(data[whole.starts[first] :], COMMA, final=True)
    assert (tail.starts + whole.starts[first]).tolist() == whole.starts[first:].tolist()
    assert tail.field_counts.tolist() == whole.field_counts[first:].tolist()


def test_partial_buffer_keeps_the_unfinished_record_for_later() -> None:
    data = b'a,b\nc,"open\nstill open'
    scanned = scan_records(data, COMMA, final=False)
    assert len(scanned) == 1
    assert scanned.consumed == 4


def test_blank_lines_are_skipped_but_counted_as_lines() -> None:
    scanned = scan_records(b"a,b\n\n\r\nc,d\n", COMMA, final=True)
    assert scanned.lines.tolist() == [0, 3]
    assert scanned.content_ends.tolist() == [3, 10]


def test_last_record_without_line_feed_is_a_record() -> None:
    scanned = scan_records(b"a,b\nc,d", COMMA, final=True)
    assert len(scanned) == 2
    assert scanned.ends.tolist() == [4, 7]


def test_stray_quote_ends_its_record_with_its_line_and_spares_the_rest() -> None:
    data = b'1,ok\n2,5" screen\n3,"multi\nline"\n4,fine\n'
    scanned = scan_records(data, COMMA, final=True)
    assert len(scanned) == 4
    assert list(scanned.problems) == [1]
    assert scanned.problems[1].field == 2
    assert "stray quote" in scanned.problems[1].message
    assert scanned.lines.tolist() == [0, 1, 2, 4]
    assert scanned.field_counts[[0, 2, 3]].tolist() == [2, 2, 2]


def test_text_after_a_closing_quote_is_reported() -> None:
    scanned = scan_records(b'"ab"cd,e\nf,g\n', COMMA, final=True)
    assert scanned.problems[0].field == 1
    assert "after a closing quote" in scanned.problems[0].message
    assert not scanned.problems.get(1)


def test_unclosed_quote_at_the_end_names_record_and_field() -> None:
    with pytest.raises(UnclosedQuote) as caught:
        scan_records(b'a,b\nc,"never closed\nx,y\n', COMMA, final=True)
    assert caught.value.record_start == 4
    assert caught.value.field == 2


def test_field_at_ignores_delimiters_inside_quotes() -> None:
    data = b'a,"x,y",c'
    assert field_at(data, data.index(b"c"), COMMA) == 3


def test_other_delimiters() -> None:
    scanned = scan_records(b'a;"b;c"\td\n', ord(";"), final=True)
    assert scanned.field_counts.tolist() == [2]
