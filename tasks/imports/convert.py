"""Convert a chunk's string columns to typed arrays, and say which cells could not be.

One converter per column kind, each vectorised over a whole pyarrow array (regular
expressions are RE2, casts are vectorised): it returns the typed values (null where a cell is
bad) and the checks that failed, each with the reason a rejected row shows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.db.schema import ColumnSpec, Kind
from tasks.imports.arrays import BoolArray, IntArray

Reason = Callable[[str], str]
_INT_RANGES = {16: (-(2**15), 2**15 - 1), 32: (-(2**31), 2**31 - 1), 64: (-(2**63), 2**63 - 1)}
_TRUE = ["t", "true", "y", "yes", "on", "1"]
_FALSE = ["f", "false", "n", "no", "off", "0"]
_TIMESTAMP = (
    r"^(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[T ](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?P<frac>\.[0-9]+)?)?)?"
    r"\s*(?P<tz>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?$"
)


def mask(array: pa.Array | pa.ChunkedArray) -> BoolArray:
    """A pyarrow boolean array as numpy, null counted as False."""
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=np.bool_)


def matches(array: pa.Array, pattern: str) -> BoolArray:
    return mask(pc.match_substring_regex(array, pattern))


Check = tuple[BoolArray, Reason]


def convert(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    """Typed values (null where the cell is null or bad) and the checks that failed."""
    converter = _CONVERTERS.get(column.kind)
    if converter is None:
        return raw, []
    return converter(raw, column)


def _try_cast(raw: pa.Array, target: pa.DataType) -> pa.Array | None:
    """The whole column cast at once, or None if any cell fails (then each cell is examined).

    Arrow's parsers are strict (no blanks, real calendar dates), so a column that casts in one
    go holds only valid values: the common case costs one vectorised call.
    """
    try:
        return pc.cast(raw, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _integers(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    fast = _try_cast(raw, pa.int64())
    if fast is not None:
        return fast, [_int_range_check(fast, column, within=mask(fast.is_valid()))]
    # Plain digit strings of up to 18 digits cast at once; the others (blanks, a "+", 19
    # digits or more, garbage), usually few, take the general path.
    plain = matches(raw, r"^-?[0-9]{1,18}$")
    values = pc.cast(pc.if_else(pa.array(plain), raw, None), pa.int64())
    checks = [_int_range_check(values, column, within=plain)]
    return _patched(raw, plain, values, checks, lambda rest: _integers_in_general(rest, column))


def _int_range_check(values: pa.Array, column: ColumnSpec, *, within: BoolArray) -> Check:
    """The cells `within` whose value (null: too big for int64) is outside the column's type."""
    low, high = _INT_RANGES[column.bits or 64]
    sql = column.sql_type.lower()
    in_range = mask(pc.and_(pc.greater_equal(values, low), pc.less_equal(values, high)))
    return within & ~in_range, (lambda v: f"{v} is out of range for {sql} ({low} to {high})")


def _integers_in_general(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    low, high = _INT_RANGES[column.bits or 64]
    # Arrow's cast refuses blanks and a leading "+", which PostgreSQL accepts.
    trimmed = pc.replace_substring_regex(pc.utf8_trim_whitespace(raw), r"^\+", "")
    digits = matches(trimmed, r"^[+-]?[0-9]+$")
    short = matches(trimmed, r"^[+-]?[0-9]{1,18}$")
    values = pc.cast(pc.if_else(pa.array(short), trimmed, None), pa.int64())
    if (digits & ~short).any():
        # 19 digits or more: exact big-integer arithmetic for the few such cells.
        python = values.to_pylist()
        for row in np.flatnonzero(digits & ~short).tolist():
            number = int(trimmed[row].as_py())
            python[row] = number if low <= number <= high else None
        values = pa.array(python, pa.int64())
    return values, [
        (~digits, lambda v: f"{v} is not an integer"),
        _int_range_check(values, column, within=digits),
    ]


def _floats(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    del column
    fast = _try_cast(raw, pa.float64())
    if fast is not None and not pc.any(pc.is_inf(fast)).as_py():
        return fast, []
    trimmed = pc.utf8_trim_whitespace(raw)
    literal = matches(
        trimmed,
        r"(?i)^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?|inf|infinity|nan)$",
    )
    values = pc.cast(pc.if_else(pa.array(literal), trimmed, None), pa.float64())
    infinite_text = matches(trimmed, r"(?i)inf")
    overflow = literal & mask(pc.is_inf(values)) & ~infinite_text
    return values, [
        (~literal, lambda v: f"{v} is not a number"),
        (overflow, lambda v: f"{v} is out of range for a floating-point number"),
    ]


def _decimals(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    """Plain numbers that fit the column are found with one regex; the others (blanks,
    exponents, too many digits, garbage), usually few, take the general path."""
    whole_digits = _whole_digits(column)
    if whole_digits is None:
        fits = matches(raw, _PLAIN_NUMBER)
    elif whole_digits == 0:
        fits = matches(raw, r"^[+-]?(?:0+(?:\.[0-9]*)?|0*\.[0-9]+)$")
    elif whole_digits > 0:
        fits = matches(raw, rf"^[+-]?(?:0*[0-9]{{1,{whole_digits}}}(?:\.[0-9]*)?|\.[0-9]+)$")
    else:
        fits = np.zeros(len(raw), dtype=np.bool_)
    values = pc.if_else(pa.array(fits), raw, None)
    return _patched(raw, fits, values, [], lambda rest: _decimals_in_general(rest, column))


_PLAIN_NUMBER = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$"


def _whole_digits(column: ColumnSpec) -> int | None:
    """How many digits a numeric(p, s) column allows before the decimal point."""
    return None if column.precision is None else column.precision - (column.scale or 0)


def _decimals_in_general(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    trimmed = pc.utf8_trim_whitespace(raw)
    plain = matches(trimmed, _PLAIN_NUMBER)
    exponent = matches(trimmed, r"(?i)^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)e[+-]?[0-9]+$")
    too_big = np.zeros(len(raw), dtype=np.bool_)
    whole_digits = _whole_digits(column)
    if whole_digits is not None:
        integer_part = pc.utf8_ltrim(
            pc.extract_regex(trimmed, r"^[+-]?(?P<i>[0-9]*)").field("i"), "0"
        )
        too_big = plain & mask(pc.greater(pc.utf8_length(integer_part), whole_digits))
        for row in np.flatnonzero(exponent).tolist():
            number = Decimal(trimmed[row].as_py())
            too_big[row] = number.adjusted() + 1 > whole_digits and number != 0
    sql = column.sql_type.lower()
    return pc.if_else(pa.array(plain | exponent), trimmed, None), [
        (~(plain | exponent), lambda v: f"{v} is not a number"),
        (too_big, lambda v: f"{v} has too many digits before the decimal point for {sql}"),
    ]


def _patched(
    raw: pa.StringArray,
    done: BoolArray,
    values: pa.Array,
    checks: list[Check],
    general: Callable[[pa.StringArray], tuple[pa.Array, list[Check]]],
) -> tuple[pa.Array, list[Check]]:
    """`values` and `checks` cover the `done` cells; the other non-null cells go through
    `general` on their own, and its values and checks are put back in place."""
    replaced = ~done & mask(raw.is_valid())
    others = np.flatnonzero(replaced)
    if len(others) == 0:
        return values, checks
    rest, rest_checks = general(raw.take(pa.array(others)))
    patched = pc.replace_with_mask(values, pa.array(replaced), rest.cast(values.type))
    placed = list(checks)
    for bad, reason in rest_checks:
        full = np.zeros(len(raw), dtype=np.bool_)
        full[others] = bad
        placed.append((full, reason))
    return patched, placed


def _booleans(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    del column
    folded = pc.utf8_lower(pc.utf8_trim_whitespace(raw))
    true = pc.is_in(folded, value_set=pa.array(_TRUE))
    false = pc.is_in(folded, value_set=pa.array(_FALSE))
    known = mask(true) | mask(false)
    values = pc.if_else(pa.array(known), true, None)
    return values, [(~known, lambda v: f"{v} is not a boolean (use true/false)")]


def _dates(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    del column
    fast = _try_cast(raw, pa.date32())
    if fast is not None:
        return fast, []
    trimmed = pc.utf8_trim_whitespace(raw)
    ok, values = _calendar_dates(trimmed)
    return pc.cast(values, pa.date32()), [(~ok, lambda v: f"{v} is not a date (YYYY-MM-DD)")]


def _calendar_dates(text: pa.Array) -> tuple[BoolArray, pa.Array]:
    """Which strings are real YYYY-MM-DD dates (strptime alone turns Feb 30 into Mar 2)."""
    shaped = matches(text, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    candidates = pc.if_else(pa.array(shaped), text, None)
    parsed = pc.strptime(candidates, format="%Y-%m-%d", unit="s", error_is_null=True)
    same = mask(pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), candidates))
    return shaped & same, pc.if_else(pa.array(shaped & same), parsed, None)


# The ISO spellings arrow's cast parses itself (with an offset for timestamptz, without one
# for timestamp); only other spellings need the regex-parts path.
_ISO_WITH_OFFSET = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"
)
_ISO_NAIVE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?$"


def _timestamps(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    """Cast the cells in arrow's own ISO form at once; parse only the rest cell by cell."""
    unit = pa.timestamp("us", tz="UTC") if column.timezone else pa.timestamp("us")
    fast = _try_cast(raw, unit)
    if fast is not None:
        return fast, []
    canonical = matches(raw, _ISO_WITH_OFFSET if column.timezone else _ISO_NAIVE)
    subset = _try_cast(pc.if_else(pa.array(canonical), raw, None), unit)
    if subset is None:
        return _timestamps_by_parts(raw, column)
    return _patched(raw, canonical, subset, [], lambda rest: _timestamps_by_parts(rest, column))


def _timestamps_by_parts(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    """Timestamps in any accepted spelling, from their regex parts (the slow, general path)."""
    unit = pa.timestamp("us", tz="UTC") if column.timezone else pa.timestamp("us")
    trimmed = pc.utf8_trim_whitespace(raw)
    parts = pc.extract_regex(trimmed, _TIMESTAMP)
    shaped = mask(parts.is_valid())
    date_ok, midnight = _calendar_dates(parts.field("date"))
    hour = _number(parts.field("hour"))
    minute = _number(parts.field("minute"))
    second = _number(parts.field("second"))
    clock_ok = mask(
        pc.and_(
            pc.and_(pc.less(hour, 24), pc.less(minute, 60)),
            pc.less(second, 60),
        )
    )
    ok = shaped & date_ok & clock_ok
    frac = pc.utf8_slice_codeunits(
        pc.binary_join_element_wise(pc.utf8_slice_codeunits(parts.field("frac"), 1), "000000", ""),
        0,
        6,
    )
    micros = (
        pc.multiply(hour, 3_600_000_000).cast(pa.int64()).to_numpy(zero_copy_only=False)
        + np.asarray(pc.multiply(minute, 60_000_000).cast(pa.int64()))
        + np.asarray(pc.multiply(second, 1_000_000).cast(pa.int64()))
        + np.asarray(_number(frac).cast(pa.int64()))
    )
    if column.timezone:
        micros -= _offset_micros(parts.field("tz"))
    # Like PostgreSQL, a timestamp without time zone keeps the wall-clock time of a value
    # that carries an offset; both database paths then store the same thing.
    base = pc.cast(pc.cast(midnight, pa.timestamp("s")), pa.timestamp("us")).cast(pa.int64())
    stamp = pa.array(np.asarray(base.fill_null(0)) + micros, pa.int64())
    values = pc.if_else(pa.array(ok), stamp.cast(unit), None)
    return values, [
        (~ok, lambda v: f"{v} is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM])"),
    ]


def _number(text: pa.Array) -> pa.Array:
    """Digit strings as int64; missing or empty parts count as 0."""
    filled = pc.if_else(pc.equal(pc.fill_null(text, ""), ""), "0", text)
    return pc.cast(filled, pa.int64())


def _offset_micros(tz: pa.Array) -> IntArray:
    """UTC offsets such as Z, +02, +0230 or -05:00, in microseconds (0 when absent)."""
    digits = pc.replace_substring(pc.fill_null(tz, ""), ":", "")
    has_offset = mask(pc.match_substring_regex(digits, r"^[+-]"))
    hours = _number(pc.if_else(pa.array(has_offset), pc.utf8_slice_codeunits(digits, 1, 3), ""))
    minutes = _number(pc.if_else(pa.array(has_offset), pc.utf8_slice_codeunits(digits, 3, 5), ""))
    sign = np.where(mask(pc.starts_with(digits, "-")), -1, 1)
    total = np.asarray(hours) * 3600 + np.asarray(minutes) * 60
    micros: IntArray = (sign * total * 1_000_000).astype(np.int64)
    return micros


def _times(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    del column
    trimmed = pc.utf8_trim_whitespace(raw)
    ok = matches(trimmed, r"^(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?$")
    return trimmed, [(~ok, lambda v: f"{v} is not a time (HH:MM[:SS])")]


def _uuids(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    del column
    folded = pc.utf8_lower(pc.utf8_trim_whitespace(raw))
    ok = matches(folded, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    return folded, [(~ok, lambda v: f"{v} is not a UUID")]


def _json(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    del column
    bad = np.zeros(len(raw), dtype=np.bool_)
    for row, text in enumerate(raw.to_pylist()):
        if text is not None:
            try:
                json.loads(text)
            except ValueError:
                bad[row] = True
    return raw, [(bad, lambda v: f"{v} is not valid JSON")]


def _strings(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    checks: list[Check] = []
    if column.length is not None:
        limit = column.length
        too_long = mask(pc.greater(pc.utf8_length(raw), limit))
        checks.append(
            (too_long, lambda v: f"{v} is longer than the {limit} characters the column allows")
        )
    if column.choices is not None:
        allowed = column.choices
        unknown = ~mask(pc.is_in(raw, value_set=pa.array(allowed)))
        checks.append((unknown, lambda v: f"{v} is not one of {', '.join(allowed)}"))
    return raw, checks


_CONVERTERS: dict[Kind, Callable[[pa.StringArray, ColumnSpec], tuple[pa.Array, list[Check]]]] = {
    Kind.INTEGER: _integers,
    Kind.FLOAT: _floats,
    Kind.DECIMAL: _decimals,
    Kind.BOOLEAN: _booleans,
    Kind.DATE: _dates,
    Kind.TIMESTAMP: _timestamps,
    Kind.TIME: _times,
    Kind.UUID: _uuids,
    Kind.JSON: _json,
    Kind.STRING: _strings,
}
