"""Validation against reflected types, NOT NULL, lengths and user rules, with clear reasons."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from tasks.db.schema import ColumnSpec, Kind, TableSpec
from tasks.errors import InputError
from tasks.imports.rules import ColumnRule
from tasks.imports.validation import check_rules, validate

UTC = dt.UTC


def _spec(*columns: ColumnSpec) -> TableSpec:
    return TableSpec(
        schema_name=None, name="t", dialect="postgresql", columns=list(columns), unique_keys=[]
    )


def _column(name: str, kind: Kind, **extra: object) -> ColumnSpec:
    base: dict[str, object] = {
        "name": name,
        "kind": kind,
        "sql_type": str(extra.pop("sql_type", kind.value)),
        "nullable": extra.pop("nullable", True),
        "has_default": False,
    }
    return ColumnSpec.model_validate({**base, **extra})


def _check(
    column: ColumnSpec, values: list[str | None], rule: ColumnRule | None = None
) -> tuple[list[object], dict[int, str]]:
    rules = {column.name: rule} if rule else {}
    result = validate(
        pa.table({column.name: pa.array(values, pa.string())}), _spec(column), rules, set()
    )
    errors = {row: cells[column.name] for row, cells in result.errors.items()}
    return result.values.column(column.name).to_pylist(), errors


def test_integers_with_range_of_the_declared_type() -> None:
    column = _column("age", Kind.INTEGER, bits=32, sql_type="INTEGER")
    values, errors = _check(column, ["42", " 7 ", "12.5", "3000000000", "+5", None, ""])
    assert values[:2] == [42, 7]
    assert values[4] == 5
    assert errors == {
        2: '"12.5" is not an integer',
        3: '"3000000000" is out of range for integer (-2147483648 to 2147483647)',
        6: '"" is not an integer',
    }


def test_bigints_beyond_18_digits_are_exact() -> None:
    column = _column("id", Kind.INTEGER, bits=64, sql_type="BIGINT")
    values, errors = _check(column, ["9223372036854775807", "9223372036854775808", "x"])
    assert values[0] == 2**63 - 1
    assert set(errors) == {1, 2}


def test_decimals_keep_their_digits_and_check_precision() -> None:
    column = _column("score", Kind.DECIMAL, precision=5, scale=2, sql_type="NUMERIC(5, 2)")
    values, errors = _check(column, ["123.45", "0.1", "1e2", "1234.5", "1e5", "abc"])
    assert values[:3] == ["123.45", "0.1", "1e2"]
    assert Decimal(str(values[2])) == 100
    assert set(errors) == {3, 4, 5}
    assert errors[3] == '"1234.5" has too many digits before the decimal point for numeric(5, 2)'


def test_floats_accept_special_values_and_refuse_overflow() -> None:
    values, errors = _check(_column("f", Kind.FLOAT), ["1.5", "-inf", "NaN", ".5", "1e999", "x"])
    assert values[0] == 1.5
    assert values[3] == 0.5
    assert errors == {
        4: '"1e999" is out of range for a floating-point number',
        5: '"x" is not a number',
    }


def test_booleans() -> None:
    values, errors = _check(_column("b", Kind.BOOLEAN), ["true", "F", "yes", "0", "maybe"])
    assert values[:4] == [True, False, True, False]
    assert errors == {4: '"maybe" is not a boolean (use true/false)'}


def test_dates_refuse_impossible_days() -> None:
    values, errors = _check(_column("d", Kind.DATE), ["2024-02-29", "2023-02-29", "2024-2-1"])
    assert values[0] == dt.date(2024, 2, 29)
    assert set(errors) == {1, 2}
    assert errors[1] == '"2023-02-29" is not a date (YYYY-MM-DD)'


def test_timestamptz_in_many_spellings_ends_in_utc() -> None:
    column = _column("at", Kind.TIMESTAMP, timezone=True)
    values, errors = _check(
        column,
        [
            "2024-01-01T10:00:00+02:00",
            "2024-01-01 10:00",
            "2024-01-01",
            "2024-06-01T12:30:45.123456789-05:30",
            "2024-13-01 00:00",
            "2024-01-01T24:00:00Z",
        ],
    )
    assert values[:4] == [
        dt.datetime(2024, 1, 1, 8, tzinfo=UTC),
        dt.datetime(2024, 1, 1, 10, tzinfo=UTC),
        dt.datetime(2024, 1, 1, tzinfo=UTC),
        dt.datetime(2024, 6, 1, 18, 0, 45, 123456, tzinfo=UTC),
    ]
    assert set(errors) == {4, 5}


def test_timestamp_without_time_zone_keeps_wall_time_like_postgresql() -> None:
    values, errors = _check(
        _column("at", Kind.TIMESTAMP), ["2024-01-01T10:00:00+02:00", "2024-01-01 10:00:00"]
    )
    assert not errors
    assert values == [dt.datetime(2024, 1, 1, 10), dt.datetime(2024, 1, 1, 10)]


def test_one_bad_cell_does_not_slow_or_spoil_the_rest_of_a_timestamp_column() -> None:
    column = _column("at", Kind.TIMESTAMP, timezone=True)
    cells: list[str | None] = ["2024-01-01T10:00:00Z"] * 500 + ["nope"] + [None]
    values, errors = _check(column, cells)
    assert errors == {500: '"nope" is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM])'}
    assert values[0] == dt.datetime(2024, 1, 1, 10, tzinfo=UTC)


def test_strings_longer_than_the_column_limit() -> None:
    column = _column("name", Kind.STRING, length=3, sql_type="VARCHAR(3)")
    _, errors = _check(column, ["abc", "Zoë", "abcd"])
    assert errors == {2: '"abcd" is longer than the 3 characters the column allows'}


def test_enum_columns_accept_only_their_labels() -> None:
    column = _column("mood", Kind.STRING, choices=["happy", "sad"])
    _, errors = _check(column, ["happy", "meh"])
    assert errors == {1: '"meh" is not one of happy, sad'}


def test_uuid_time_and_json() -> None:
    uuid_values, uuid_errors = _check(
        _column("u", Kind.UUID), ["A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "nope"]
    )
    assert uuid_values[0] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert set(uuid_errors) == {1}
    _, time_errors = _check(_column("t", Kind.TIME), ["23:59:59", "24:00"])
    assert set(time_errors) == {1}
    _, json_errors = _check(_column("j", Kind.JSON), ['{"a": 1}', "{nope"])
    assert json_errors == {1: '"{nope" is not valid JSON'}


def test_not_null_and_required_columns() -> None:
    spec = _spec(
        _column("a", Kind.STRING, nullable=False),
        _column("b", Kind.STRING),
        _column("k", Kind.STRING),
    )
    table = pa.table({"a": [None, "x"], "b": [None, None], "k": ["1", None]})
    result = validate(table, spec, {"b": ColumnRule(required=True)}, {"k"})
    assert result.errors == {
        0: {"a": "is empty, but the column is NOT NULL", "b": "is required"},
        1: {"b": "is required", "k": "is required"},
    }
    assert result.valid.tolist() == [False, False]


def test_rules_apply_to_present_values() -> None:
    column = _column("age", Kind.INTEGER, bits=32)
    _, errors = _check(column, ["5", "200", "-1", None], ColumnRule(min=0, max=150))
    assert errors == {1: '"200" is more than the maximum 150', 2: '"-1" is less than the minimum 0'}
    text = _column("code", Kind.STRING)
    _, errors = _check(
        text,
        ["AB12", "ab", "ABCDEFG", "ZZ99"],
        ColumnRule(pattern="[A-Z]{2}[0-9]{2}", min_length=3, choices=["AB12", "ABCDEFG"]),
    )
    assert errors == {
        1: '"ab" is shorter than 3 characters',
        2: '"ABCDEFG" does not match [A-Z]{2}[0-9]{2}',
        3: '"ZZ99" is not one of AB12, ABCDEFG',
    }
    _, errors = _check(text, ["a@b.co", "a@b", "no"], ColumnRule(format="email"))
    assert set(errors) == {1, 2}


def test_date_bounds() -> None:
    column = _column("d", Kind.DATE)
    _, errors = _check(column, ["2020-01-01", "1999-12-31"], ColumnRule(min="2000-01-01"))
    assert set(errors) == {1}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (ColumnRule(min="x"), "min must be a number"),
        (ColumnRule(pattern="("), "pattern '\\(' is invalid"),
    ],
)
def test_impossible_rules_are_refused_before_reading(rule: ColumnRule, message: str) -> None:
    spec = _spec(_column("age", Kind.INTEGER, bits=32))
    with pytest.raises(InputError, match=message):
        check_rules({"age": rule}, spec, ["age"])


def test_rules_for_unknown_columns_are_refused() -> None:
    spec = _spec(_column("age", Kind.INTEGER, bits=32))
    with pytest.raises(InputError, match="'nope' is not among the imported columns"):
        check_rules({"nope": ColumnRule(required=True)}, spec, ["age"])


def test_text_bounds_must_use_lengths() -> None:
    spec = _spec(_column("name", Kind.STRING))
    with pytest.raises(InputError, match="use min_length/max_length"):
        check_rules({"name": ColumnRule(min=3)}, spec, ["name"])
