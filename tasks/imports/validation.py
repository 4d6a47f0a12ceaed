"""Validate a chunk's string columns against the table's types and the user's rules.

Each column is converted by its kind's converter (convert.py), then the user's rules
(rules.py) are checked on the typed values, all on whole pyarrow arrays; Python only formats
the message of a row that fails. A rejected row gets one reason per column at fault, e.g.
`{"age": "\"12.5\" is not an integer"}`. The accepted values come back typed (int64,
float64, bool, date32, timestamp[us]) so that de-duplication compares values, not spellings,
and the writers send each database what it parses best.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.db.schema import ColumnSpec, Kind, TableSpec
from tasks.errors import InputError
from tasks.imports.arrays import BoolArray
from tasks.imports.convert import Check, Reason, convert, mask, matches
from tasks.imports.rules import ColumnRule

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


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
        present = np.ones(rows, dtype=np.bool_) if raw.null_count == 0 else mask(raw.is_valid())
        if name in required or rule.required or not column.nullable:
            failures.append((name, raw, ~present, _missing_reason(column.nullable)))
        if spec.dialect == "postgresql" and raw.null_count < rows and _holds_nul(raw):
            failures.append((name, raw, mask(pc.match_substring(raw, "\x00")), _nul_reason))
        converted, checks = convert(raw, column)
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


def _holds_nul(raw: pa.StringArray) -> bool:
    """Whether any byte of the column's value buffer is NUL: one pass over raw memory, so
    only a column that holds one is searched cell by cell (a false alarm from bytes outside
    a sliced array's cells costs only that search)."""
    values = raw.buffers()[2]
    return values is not None and not np.frombuffer(values, dtype=np.uint8).all()


def _nul_reason(value: str) -> str:
    return f"{value} contains a NUL byte (\\x00), which PostgreSQL text cannot hold"


def _show(value: str | None) -> str:
    """The value quoted for a reason, cut at 60 characters; a NUL is spelled `\\x00`, as
    PostgreSQL text and jsonb hold neither the byte nor its `\\u0000` escape."""
    text = "" if value is None else value
    shown = json.dumps(text if len(text) <= 60 else text[:57] + "...", ensure_ascii=False)
    return shown.replace("\\u0000", "\\x00")


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
            (mask(pc.less(comparable, low)), lambda v: f"{v} is less than the minimum {rule.min}")
        )
    if rule.max is not None and comparable is not None:
        high = _bound(rule.max, column.kind)
        checks.append(
            (
                mask(pc.greater(comparable, high)),
                lambda v: f"{v} is more than the maximum {rule.max}",
            )
        )
    if rule.min_length is not None or rule.max_length is not None:
        length = pc.utf8_length(raw)
        if rule.min_length is not None:
            short = rule.min_length
            checks.append(
                (mask(pc.less(length, short)), lambda v: f"{v} is shorter than {short} characters")
            )
        if rule.max_length is not None:
            long = rule.max_length
            checks.append(
                (mask(pc.greater(length, long)), lambda v: f"{v} is longer than {long} characters")
            )
    if rule.pattern is not None:
        pattern = rule.pattern
        checks.append(
            (~matches(raw, f"^(?:{pattern})$"), lambda v: f"{v} does not match {pattern}")
        )
    if rule.choices is not None:
        choices = rule.choices
        unknown = ~mask(pc.is_in(raw, value_set=pa.array(choices)))
        checks.append((unknown, lambda v: f"{v} is not one of {', '.join(choices)}"))
    if rule.format == "email":
        checks.append((~matches(raw, EMAIL_PATTERN), lambda v: f"{v} is not an email address"))
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
    converted, checks = convert(pa.array([value]), spec)
    if any(bad[0] for bad, _reason in checks):
        return None
    return converted[0]
