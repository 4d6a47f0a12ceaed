"""Database errors become TargetError, transient only when a retry may succeed."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from tasks.db.errors import database_errors
from tasks.errors import TargetError


def test_a_busy_sqlite_is_transient() -> None:
    with (
        pytest.raises(TargetError, match="dead letters: the database refused") as caught,
        database_errors("dead letters"),
    ):
        raise sqlite3.OperationalError("database is locked")
    assert caught.value.transient
    assert "will retry" in str(caught.value)


def test_errors_wrapped_by_sqlalchemy_are_unwrapped(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")

    with (
        pytest.raises(TargetError, match=r"UNIQUE constraint failed: t\.id") as caught,
        database_errors("t"),
        engine.begin() as conn,
    ):
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    assert not caught.value.transient
    engine.dispose()
