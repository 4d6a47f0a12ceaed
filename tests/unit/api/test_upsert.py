"""Upserting a page of records with its sync state, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tasks.api.upsert import RecordTarget, SyncUpdate, read_sync_state, upsert_page
from tasks.db.engine import get_engine
from tasks.db.schema import reflect_table
from tasks.errors import SchemaError, TargetError
from tests.flows.api.helpers import rows


def make_target(database_url: str) -> RecordTarget:
    metadata = sa.MetaData()
    sa.Table(
        "people",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text),
        sa.Column("age", sa.Integer),
        sa.Column("tags", sa.JSON),
        sa.CheckConstraint("age >= 0", name="age_not_negative"),
    )
    engine = get_engine(database_url)
    metadata.create_all(engine)
    return RecordTarget.check(reflect_table(engine, "people"), ["id"])


def state(**fields: object) -> SyncUpdate:
    return SyncUpdate.model_validate({"source": "people <- GET test", **fields})


def test_updated_counts_only_records_whose_values_changed(database_url: str) -> None:
    target = make_target(database_url)
    engine = get_engine(database_url)
    first = [{"id": 1, "name": "a", "age": 1, "tags": ["x"]}, {"id": 2, "name": "b", "age": 2}]
    upsert_page(engine, target, first, state(records=2))

    again = [
        {"id": 1, "name": "a", "age": 1, "tags": ["x"]},
        {"id": 2, "name": "B", "age": 2},
        {"id": 3, "name": "c", "age": 3},
    ]
    counts = upsert_page(engine, target, again, state(records=3))

    assert (counts.records, counts.inserted, counts.updated, counts.unchanged) == (3, 1, 1, 1)
    assert rows(database_url, "SELECT id, name FROM people ORDER BY id") == [
        (1, "a"),
        (2, "B"),
        (3, "c"),
    ]


def test_state_is_written_with_the_page_and_keeps_what_it_does_not_change(
    database_url: str,
) -> None:
    target = make_target(database_url)
    engine = get_engine(database_url)
    upsert_page(engine, target, [{"id": 1}], state(last_value='"m1"', cursor="_page=1", records=1))
    upsert_page(engine, target, [{"id": 2}], state(cursor="_page=2", records=1))

    assert read_sync_state(engine, "people <- GET test") == ('"m1"', "_page=2")
    assert rows(database_url, "SELECT records FROM batchflows_sync_state") == [(2,)]


def test_a_refused_page_writes_neither_records_nor_state(database_url: str) -> None:
    target = make_target(database_url)
    engine = get_engine(database_url)
    page = [{"id": 1, "age": 30}, {"id": 2, "age": -1}]

    with pytest.raises(TargetError, match=r"people <- GET test.*age_not_negative"):
        upsert_page(engine, target, page, state(last_value='"m"', records=2))

    assert rows(database_url, "SELECT count(*) FROM people") == [(0,)]
    assert read_sync_state(engine, "people <- GET test") == (None, None)


def test_a_key_repeated_in_a_page_keeps_its_last_occurrence(database_url: str) -> None:
    target = make_target(database_url)
    engine = get_engine(database_url)

    counts = upsert_page(
        engine, target, [{"id": 1, "name": "old"}, {"id": 1, "name": "new"}], state()
    )

    assert counts.inserted == 1
    assert rows(database_url, "SELECT name FROM people") == [("new",)]


def test_fields_that_are_not_columns_are_reported_not_written(sqlite_url: str) -> None:
    target = make_target(sqlite_url)
    records = [{"id": 1, "name": "a", "extra": 1}, {"id": 2, "nickname": "b"}]

    assert target.ignored_fields(records) == {"extra", "nickname"}
    assert target.columns_of(records) == ["id", "name"]


@pytest.mark.parametrize(
    ("key", "message"),
    [([], "at least one column"), (["nope"], "no column 'nope'"), (["name"], "no primary key")],
)
def test_a_key_the_table_cannot_upsert_on_is_refused(
    sqlite_url: str, key: list[str], message: str
) -> None:
    make_target(sqlite_url)
    table = reflect_table(get_engine(sqlite_url), "people")

    with pytest.raises(SchemaError, match=message):
        RecordTarget.check(table, key)
