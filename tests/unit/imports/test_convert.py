"""The fast paths of the converters agree with their general path, cell by cell.

A column's common cells are converted with one regex and one cast, the others by the
general path; whatever the mix, the values and the reasons must be those the general path
gives for every cell.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pytest

from tasks.db.schema import ColumnSpec, Kind
from tasks.imports.convert import (
    Check,
    _decimals_in_general,
    _integers_in_general,
    convert,
)

NUMBERS = [
    "0", "7", "-7", "+7", " 7 ", "007", "12.5", "-.5", ".5", "5.", "+1.", "0.25", "-0.99",
    "000123.45", "123.45", "1234.5", "99999.9", "0000.5", "00", "1e2", "1E-3", "-2.5e1",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808", "123456789012345678",
    "1234567890123456789", "3000000000", "-2147483649", "", " ", "abc", "1,5", "--1", "+-1",
    ".", "e5", "1e", "٣", "12\n", None,
]  # fmt: skip


def _column(kind: Kind, **extra: object) -> ColumnSpec:
    base = {"name": "c", "kind": kind, "sql_type": "t", "nullable": True, "has_default": False}
    return ColumnSpec.model_validate(base | extra)


def _by_cell(values: pa.Array, checks: list[Check], cells: Sequence[str | None]) -> list[object]:
    """Per cell: its value, or the first reason it fails (null cells are not judged)."""
    out: list[object] = []
    for row, cell in enumerate(cells):
        reasons = [reason(repr(cell)) for bad, reason in checks if bad[row]]
        out.append(reasons[0] if reasons and cell is not None else values[row].as_py())
    return out


@pytest.mark.parametrize(
    ("precision", "scale"), [(None, None), (5, 2), (8, 2), (2, 2), (3, 0), (2, 4), (1, 0)]
)
def test_decimals_fast_path_agrees_with_the_general_path(
    precision: int | None, scale: int | None
) -> None:
    column = _column(Kind.DECIMAL, precision=precision, scale=scale)
    for cells in (NUMBERS, [c for c in NUMBERS if c is not None and c.strip() == c]):
        raw = pa.array(cells, pa.string())
        fast = _by_cell(*convert(raw, column), cells)
        assert fast == _by_cell(*_decimals_in_general(raw, column), cells)


@pytest.mark.parametrize("bits", [16, 32, 64])
def test_integers_fast_path_agrees_with_the_general_path(bits: int) -> None:
    column = _column(Kind.INTEGER, bits=bits)
    for cells in (NUMBERS, ["1", "-2", "40000", "3000000000"], ["1", "-2", "+3", " 4"]):
        raw = pa.array(cells, pa.string())
        fast = _by_cell(*convert(raw, column), cells)
        assert fast == _by_cell(*_integers_in_general(raw, column), cells)
