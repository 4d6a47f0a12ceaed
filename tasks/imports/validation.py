"""Validate and convert a chunk's string columns against the table's types and the user's rules.

Everything runs on whole pyarrow arrays (regular expressions are RE2, casts are vectorised);
Python only formats the message of a row that fails. A rejected row gets one reason per column
at fault, e.g. `{"age": "\"12.5\" is not an integer"}`. The accepted values come back typed
(int64, float64, bool, date32, timestamp[us]) so that de-duplication compares values, not
spellings, and the writers send each database what it parses best.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from tasks.db.schema import ColumnSpec, Kind, TableSpec
from tasks.errors import InputError

BoolArray = npt.NDArray[np.bool_]
Reason = Callable[[str], str]

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_INT_RANGES = {16: (-(2**15), 2**15 - 1), 32: (-(2**31), 2**31 - 1), 64: (-(2**63), 2**63 - 1)}
_TRUE = ["t", "true", "y", "yes", "on", "1"]
_FALSE = ["f", "false", "n", "no", "off", "0"]
_TIMESTAMP = (
    r"^(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[T ](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2})(?P<frac>\.[0-9]+)?)?)?"
    r"\s*(?P<tz>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?$"
)


class ColumnRule(BaseModel):
    """Extra checks for one column, on top of its type, NOT NULL and length limit."""

    model_config = ConfigDict(extra="forbid")

    required: bool = False
    min: int | float | str | None = None
    max: int | float | str | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: list[str] | None = None
    format: Literal["email"] | None = None


@dataclass
class Validated:
    """Typed values of every row (failed cells are null), which rows passed, and why not."""

    values: pa.Table
    valid: BoolArray
    errors: dict[int, dict[str, str]] = field(default_factory=dict)


def check_rules(rules: dict[str, ColumnRule], spec: TableSpec, columns: list[str]) -> None:
    """Refuse rules that could never apply, before any data is read."""
    for name, rule in rules.items():
        where = f"parameter 'rules': column {name!r}"
        if name not in columns:
            raise InputError(f"{where} is not among the imported columns {columns}")
        kind = spec.column(name).kind
        for bound in ("min", "max"):
            value = getattr(rule, bound)
            if value is None:
                continue
            if kind in (Kind.INTEGER, Kind.FLOAT, Kind.DECIMAL):
                if not isinstance(value, int | float):
                    raise InputError(f"{where}: {bound} must be a number for a {kind} column")
            elif kind in (Kind.DATE, Kind.TIMESTAMP):
                if _parse_bound(str(value), kind) is None:
                    raise InputError(f"{where}: {bound} {value!r} is not an ISO {kind}")
            else:
                raise InputError(
                    f"{where}: {bound} applies to numbers, dates and timestamps; "
                    "use min_length/max_length for text"
                )
        if rule.pattern is not None:
            try:
                pc.match_substring_regex(pa.array([""]), f"^(?:{rule.pattern})$")
            except pa.ArrowInvalid as exc:
                raise InputError(f"{where}: pattern {rule.pattern!r} is invalid: {exc}") from exc


def validate(
    strings: pa.Table,
    spec: TableSpec,
    rules: dict[str, ColumnRule],
    required: set[str],
) -> Validated:
    """Check every cell of `strings` (one string column per imported column)."""
    rows = strings.num_rows
    failures: list[tuple[str, pa.Array, BoolArray, Reason]] = []
    values: dict[str, pa.Array] = {}
    for name in strings.column_names:
        raw = strings.column(name).combine_chunks()
        column = spec.column(name)
        rule = rules.get(name, ColumnRule())
        present = np.ones(rows, dtype=np.bool_) if raw.null_count == 0 else _mask(raw.is_valid())
        if name in required or rule.required or not column.nullable:
            failures.append((name, raw, ~present, _missing_reason(column.nullable)))
        if spec.dialect == "postgresql" and raw.null_count < rows:
            failures.append((name, raw, _mask(pc.match_substring(raw, "\x00")), _nul_reason))
        converted, checks = _convert(raw, column)
        values[name] = converted
        failures.extend((name, raw, bad & present, reason) for bad, reason in checks)
        failures.extend(
            (name, raw, bad & present, reason)
            for bad, reason in _rule_checks(raw, converted, column, rule)
        )
    valid = np.ones(rows, dtype=np.bool_)
    errors: dict[int, dict[str, str]] = {}
    for name, raw, bad, reason in failures:
        if not bad.any():
            continue
        valid &= ~bad
        for row in np.flatnonzero(bad).tolist():
            cell = errors.setdefault(row, {})
            if name not in cell:
                cell[name] = reason(_show(raw[row].as_py()))
    return Validated(values=pa.table(values), valid=valid, errors=errors)


def _missing_reason(nullable: bool) -> Reason:
    why = "is required" if nullable else "is empty, but the column is NOT NULL"

    def reason(_value: str) -> str:
        return why

    return reason


def _nul_reason(value: str) -> str:
    return f"{value} contains a NUL byte (\\x00), which PostgreSQL text cannot hold"


def _mask(array: pa.Array | pa.ChunkedArray) -> BoolArray:
    """A pyarrow boolean array as numpy, null counted as False."""
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=np.bool_)


def _show(value: str | None) -> str:
    """The value quoted for a reason, cut at 60 characters; a NUL is spelled `\\x00`, as
    PostgreSQL text and jsonb hold neither the byte nor its `\\u0000` escape."""
    text = "" if value is None else value
    shown = json.dumps(text if len(text) <= 60 else text[:57] + "...", ensure_ascii=False)
    return shown.replace("\\u0000", "\\x00")


def _matches(array: pa.Array, pattern: str) -> BoolArray:
    return _mask(pc.match_substring_regex(array, pattern))


Check = tuple[BoolArray, Reason]


def _convert(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
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
    low, high = _INT_RANGES[column.bits or 64]
    sql = column.sql_type.lower()
    fast = _try_cast(raw, pa.int64())
    if fast is not None:
        in_range = _mask(pc.and_(pc.greater_equal(fast, low), pc.less_equal(fast, high)))
        return fast, [(~in_range, lambda v: f"{v} is out of range for {sql} ({low} to {high})")]
    # Arrow's cast refuses blanks and a leading "+", which PostgreSQL accepts.
    trimmed = pc.replace_substring_regex(pc.utf8_trim_whitespace(raw), r"^\+", "")
    digits = _matches(trimmed, r"^[+-]?[0-9]+$")
    short = _matches(trimmed, r"^[+-]?[0-9]{1,18}$")
    values = pc.cast(pc.if_else(pa.array(short), trimmed, None), pa.int64())
    if (digits & ~short).any():
        # 19 digits or more: exact big-integer arithmetic for the few such cells.
        python = values.to_pylist()
        for row in np.flatnonzero(digits & ~short).tolist():
            number = int(trimmed[row].as_py())
            python[row] = number if low <= number <= high else None
        values = pa.array(python, pa.int64())
    in_range = _mask(pc.and_(pc.greater_equal(values, low), pc.less_equal(values, high)))
    return values, [
        (~digits, lambda v: f"{v} is not an integer"),
        (digits & ~in_range, lambda v: f"{v} is out of range for {sql} ({low} to {high})"),
    ]


def _floats(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    del column
    fast = _try_cast(raw, pa.float64())
    if fast is not None and not pc.any(pc.is_inf(fast)).as_py():
        return fast, []
    trimmed = pc.utf8_trim_whitespace(raw)
    literal = _matches(
        trimmed,
        r"(?i)^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?|inf|infinity|nan)$",
    )
    values = pc.cast(pc.if_else(pa.array(literal), trimmed, None), pa.float64())
    infinite_text = _matches(trimmed, r"(?i)inf")
    overflow = literal & _mask(pc.is_inf(values)) & ~infinite_text
    return values, [
        (~literal, lambda v: f"{v} is not a number"),
        (overflow, lambda v: f"{v} is out of range for a floating-point number"),
    ]


def _decimals(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    trimmed = pc.utf8_trim_whitespace(raw)
    plain = _matches(trimmed, r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$")
    exponent = _matches(trimmed, r"(?i)^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)e[+-]?[0-9]+$")
    too_big = np.zeros(len(raw), dtype=np.bool_)
    if column.precision is not None:
        whole_digits = column.precision - (column.scale or 0)
        integer_part = pc.utf8_ltrim(
            pc.extract_regex(trimmed, r"^[+-]?(?P<i>[0-9]*)").field("i"), "0"
        )
        too_big = plain & _mask(pc.greater(pc.utf8_length(integer_part), whole_digits))
        for row in np.flatnonzero(exponent).tolist():
            number = Decimal(trimmed[row].as_py())
            too_big[row] = number.adjusted() + 1 > whole_digits and number != 0
    sql = column.sql_type.lower()
    return pc.if_else(pa.array(plain | exponent), trimmed, None), [
        (~(plain | exponent), lambda v: f"{v} is not a number"),
        (too_big, lambda v: f"{v} has too many digits before the decimal point for {sql}"),
    ]


def _booleans(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    del column
    folded = pc.utf8_lower(pc.utf8_trim_whitespace(raw))
    true = pc.is_in(folded, value_set=pa.array(_TRUE))
    false = pc.is_in(folded, value_set=pa.array(_FALSE))
    known = _mask(true) | _mask(false)
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
    shaped = _matches(text, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    candidates = pc.if_else(pa.array(shaped), text, None)
    parsed = pc.strptime(candidates, format="%Y-%m-%d", unit="s", error_is_null=True)
    same = _mask(pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), candidates))
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
    canonical = _matches(raw, _ISO_WITH_OFFSET if column.timezone else _ISO_NAIVE)
    subset = _try_cast(pc.if_else(pa.array(canonical), raw, None), unit)
    if subset is None:
        return _timestamps_by_parts(raw, column)
    # Only the few other cells take the slow path; their results go back in place.
    others = np.flatnonzero(~canonical & _mask(raw.is_valid()))
    rest, checks = _timestamps_by_parts(raw.take(pa.array(others)), column)
    values = pc.replace_with_mask(subset, pa.array(~canonical & _mask(raw.is_valid())), rest)
    placed: list[Check] = []
    for bad, reason in checks:
        full = np.zeros(len(raw), dtype=np.bool_)
        full[others] = bad
        placed.append((full, reason))
    return values, placed


def _timestamps_by_parts(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    """Timestamps in any accepted spelling, from their regex parts (the slow, general path)."""
    unit = pa.timestamp("us", tz="UTC") if column.timezone else pa.timestamp("us")
    trimmed = pc.utf8_trim_whitespace(raw)
    parts = pc.extract_regex(trimmed, _TIMESTAMP)
    shaped = _mask(parts.is_valid())
    date_ok, midnight = _calendar_dates(parts.field("date"))
    hour = _number(parts.field("hour"))
    minute = _number(parts.field("minute"))
    second = _number(parts.field("second"))
    clock_ok = _mask(
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


def _offset_micros(tz: pa.Array) -> npt.NDArray[np.int64]:
    """UTC offsets such as Z, +02, +0230 or -05:00, in microseconds (0 when absent)."""
    digits = pc.replace_substring(pc.fill_null(tz, ""), ":", "")
    has_offset = _mask(pc.match_substring_regex(digits, r"^[+-]"))
    hours = _number(pc.if_else(pa.array(has_offset), pc.utf8_slice_codeunits(digits, 1, 3), ""))
    minutes = _number(pc.if_else(pa.array(has_offset), pc.utf8_slice_codeunits(digits, 3, 5), ""))
    sign = np.where(_mask(pc.starts_with(digits, "-")), -1, 1)
    total = np.asarray(hours) * 3600 + np.asarray(minutes) * 60
    micros: npt.NDArray[np.int64] = (sign * total * 1_000_000).astype(np.int64)
    return micros


def _times(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    del column
    trimmed = pc.utf8_trim_whitespace(raw)
    ok = _matches(trimmed, r"^(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?$")
    return trimmed, [(~ok, lambda v: f"{v} is not a time (HH:MM[:SS])")]


def _uuids(raw: pa.StringArray, column: ColumnSpec) -> tuple[pa.Array, list[Check]]:
    del column
    folded = pc.utf8_lower(pc.utf8_trim_whitespace(raw))
    ok = _matches(folded, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
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
        too_long = _mask(pc.greater(pc.utf8_length(raw), limit))
        checks.append(
            (too_long, lambda v: f"{v} is longer than the {limit} characters the column allows")
        )
    if column.choices is not None:
        allowed = column.choices
        unknown = ~_mask(pc.is_in(raw, value_set=pa.array(allowed)))
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


def _rule_checks(
    raw: pa.StringArray, converted: pa.Array, column: ColumnSpec, rule: ColumnRule
) -> list[Check]:
    checks: list[Check] = []
    comparable = (
        _comparable(converted, column.kind) if (rule.min, rule.max) != (None, None) else None
    )
    if rule.min is not None and comparable is not None:
        low = _bound(rule.min, column.kind)
        checks.append(
            (_mask(pc.less(comparable, low)), lambda v: f"{v} is less than the minimum {rule.min}")
        )
    if rule.max is not None and comparable is not None:
        high = _bound(rule.max, column.kind)
        checks.append(
            (
                _mask(pc.greater(comparable, high)),
                lambda v: f"{v} is more than the maximum {rule.max}",
            )
        )
    if rule.min_length is not None or rule.max_length is not None:
        length = pc.utf8_length(raw)
        if rule.min_length is not None:
            short = rule.min_length
            checks.append(
                (_mask(pc.less(length, short)), lambda v: f"{v} is shorter than {short} characters")
            )
        if rule.max_length is not None:
            long = rule.max_length
            checks.append(
                (_mask(pc.greater(length, long)), lambda v: f"{v} is longer than {long} characters")
            )
    if rule.pattern is not None:
        pattern = rule.pattern
        checks.append(
            (~_matches(raw, f"^(?:{pattern})$"), lambda v: f"{v} does not match {pattern}")
        )
    if rule.choices is not None:
        choices = rule.choices
        unknown = ~_mask(pc.is_in(raw, value_set=pa.array(choices)))
        checks.append((unknown, lambda v: f"{v} is not one of {', '.join(choices)}"))
    if rule.format == "email":
        checks.append((~_matches(raw, EMAIL_PATTERN), lambda v: f"{v} is not an email address"))
    return checks


def _comparable(values: pa.Array, kind: Kind) -> pa.Array | None:
    if kind == Kind.DECIMAL:
        return pc.cast(values, pa.float64())
    if kind in (Kind.INTEGER, Kind.FLOAT, Kind.DATE, Kind.TIMESTAMP):
        return values
    return None


def _bound(value: int | float | str, kind: Kind) -> pa.Scalar:
    if kind in (Kind.DATE, Kind.TIMESTAMP):
        parsed = _parse_bound(str(value), kind)
        assert parsed is not None  # checked by check_rules
        return parsed
    return pa.scalar(float(value))


def _parse_bound(value: str, kind: Kind) -> pa.Scalar | None:
    spec = ColumnSpec(name="bound", kind=kind, sql_type=kind, nullable=True, has_default=False)
    converted, checks = _convert(pa.array([value]), spec)
    if any(bad[0] for bad, _reason in checks):
        return None
    return converted[0]
