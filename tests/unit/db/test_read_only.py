"""The read-only check of export queries and `where` conditions."""

from __future__ import annotations

import pytest

from tasks.db.read_only import check_condition, check_select, check_snapshot_id
from tasks.errors import InputError


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("select 1;", "select 1"),
        ("SELECT * FROM users ; -- done\n", "SELECT * FROM users"),
        (
            "with a as (select ';' as x) select * from a",
            "with a as (select ';' as x) select * from a",
        ),
        ("select \"update\", 'delete' from t", "select \"update\", 'delete' from t"),
        ("(select 1) union (select 2)", "(select 1) union (select 2)"),
        ("select $$; insert$$ as x", "select $$; insert$$ as x"),
    ],
)
def test_single_select_passes_without_trailing_semicolons(query: str, expected: str) -> None:
    assert check_select(query) == expected


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("select 1; drop table users", "only one statement"),
        ("delete from users", "not 'delete'"),
        ("update users set name = 'x'", "not 'update'"),
        ("with d as (delete from users returning *) select * from d", "contains DELETE"),
        ("select * into copy_of_users from users", "contains INTO"),
        ("explain analyze select 1", "not 'explain'"),
        ("select 'unterminated", "unterminated"),
        ("  ;  ", "empty"),
    ],
)
def test_writes_and_several_statements_are_refused_naming_the_parameter(
    query: str, reason: str
) -> None:
    with pytest.raises(InputError, match=reason) as caught:
        check_select(query)
    assert "parameter 'query'" in str(caught.value)


@pytest.mark.parametrize(
    "query",
    [
        # `$a1$` is a dollar quote to PostgreSQL: the ';' is outside any string or comment.
        "SELECT $a1$ /* $a1$ AS x) q; COMMIT; DELETE FROM t; SELECT 1 --*/",
        # `é$a$` is one identifier, so `$a$` opens no quote.
        "SELECT 1 AS é$a$, 2; DELETE FROM t; SELECT $a$",
        # PostgreSQL ends a `--` comment at a carriage return too.
        "SELECT 1 -- note\rAS x; DELETE FROM t",
    ],
)
def test_the_check_lexes_like_postgresql(query: str) -> None:
    with pytest.raises(InputError, match="only one statement"):
        check_select(query)


def test_dollar_quotes_with_digits_and_non_ascii_names_pass() -> None:
    assert (
        check_select("select $q1$ ; delete $q1$ as ünï$x") == "select $q1$ ; delete $q1$ as ünï$x"
    )
    with pytest.raises(InputError, match="nested"):
        check_select("select 1 /* outer /* inner */ ; delete from t */")


def test_condition_cannot_escape_its_parentheses() -> None:
    assert check_condition("age > 3 and name = ')'") == "age > 3 and name = ')'"
    for bad in ("1=1) or (1=1", "1=1; delete from users", "(age > 3", ""):
        with pytest.raises(InputError, match="parameter 'where'"):
            check_condition(bad)
    with pytest.raises(InputError, match="contains DELETE"):
        check_condition("id in (with d as (delete from users returning id) select id from d)")


def test_snapshot_id_is_checked_before_reaching_sql() -> None:
    assert check_snapshot_id("00000003-0000001B-1") == "00000003-0000001B-1"
    with pytest.raises(InputError):
        check_snapshot_id("1'; drop table users; --")
