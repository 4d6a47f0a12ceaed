"""Bound parameters in user SELECTs: values stay values, nothing is written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tasks.db.engine import dispose_engines, get_engine
from tasks.db.select import Statement, compile_bound, fetch_all, parameters_of, table_select
from tasks.errors import InputError, TargetError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = get_engine(f"sqlite:///{tmp_path / 't.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (name text, n integer)"))
        conn.execute(sa.text("INSERT INTO t VALUES ('a', 1), ('b', 2)"))
    yield engine
    dispose_engines()


def test_value_with_sql_in_it_matches_nothing_and_changes_nothing(engine: sa.Engine) -> None:
    hostile = "a' OR '1'='1"
    (rows,) = fetch_all(engine, [Statement("q", "SELECT * FROM t WHERE name = :v")], {"v": hostile})
    assert rows.rows == []
    (rows,) = fetch_all(engine, [Statement("q", "SELECT count(*) AS c FROM t")], {})
    assert rows.dicts() == [{"c": 2}]


def test_writing_statement_is_refused_and_a_database_error_names_the_query(
    engine: sa.Engine,
) -> None:
    with pytest.raises(InputError, match="read-only SELECT"):
        fetch_all(engine, [Statement("q", "DELETE FROM t")], {})
    with pytest.raises(TargetError, match="report x query y"):
        fetch_all(engine, [Statement("report x query y", "SELECT * FROM missing")], {})


def test_missing_value_is_named() -> None:
    with pytest.raises(InputError, match=":since"):
        compile_bound(sa.create_engine("sqlite://"), "SELECT :since", {}, "report q")


def test_placeholders_and_percent_signs_compile_for_psycopg() -> None:
    engine = sa.create_engine("postgresql+psycopg://u@127.0.0.1/x")
    sql, values = compile_bound(engine, "SELECT '50%', :a WHERE x LIKE 'a%'", {"a": 1}, "q")
    assert sql == "SELECT '50%%', %(a)s WHERE x LIKE 'a%%'"
    assert values == {"a": 1}
    # A colon that is not a placeholder, even inside a string literal, is written `\:`.
    assert parameters_of("SELECT :a, :b, '\\:c', '10:30'") == {"a", "b"}


def test_table_name_is_quoted() -> None:
    engine = sa.create_engine("sqlite://")
    assert table_select(engine, 'we"ird') == 'SELECT * FROM "we""ird"'
    assert table_select(engine, "main.people") == 'SELECT * FROM "main"."people"'
