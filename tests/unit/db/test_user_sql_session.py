"""The session user SQL runs in, on the real PostgreSQL, with the text check left out:
whatever reaches it runs as one statement, cannot write, ends in time and leaves nothing
behind in the pool."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator

import psycopg
import psycopg.errors
import pytest
import sqlalchemy as sa

from tasks.db import select
from tasks.db.engine import get_engine
from tasks.db.read_only import READONLY_ROLE_ENV, TIMEOUT_ENV, read_only_connection, run_user_sql
from tasks.errors import TargetError
from tasks.exports.read import CopyOut, cursor_batches

SMUGGLED = "SELECT 1 AS x; COMMIT; DELETE FROM victim; SELECT 1 AS y"


@pytest.fixture
def victim(postgres_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE victim (id int PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO victim SELECT generate_series(1, 10)"))
    yield engine
    engine.dispose()


def _rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM victim")).scalar_one())


def test_a_probe_runs_one_statement_only(postgres_url: str, victim: sa.Engine) -> None:
    with (
        pytest.raises(psycopg.errors.SyntaxError, match="multiple commands"),
        read_only_connection(get_engine(postgres_url)) as conn,
    ):
        run_user_sql(conn, SMUGGLED)
    assert _rows(victim) == 10


@pytest.mark.parametrize(
    ("sql", "values"),
    [
        ("SELECT 1 AS x; COMMIT; DELETE FROM victim", {}),
        ("SELECT :v; DELETE FROM victim", {"v": 1}),
    ],
)
def test_a_report_or_recipients_query_runs_one_statement_only(
    postgres_url: str,
    victim: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
    sql: str,
    values: dict[str, int],
) -> None:
    monkeypatch.setattr(select, "check_select", lambda text, parameter, bookkeeping: text)
    with pytest.raises(TargetError, match="multiple commands"):
        select.fetch_all(get_engine(postgres_url), [select.Statement("query", sql)], values)
    assert _rows(victim) == 10


def test_copy_out_runs_one_statement_only(postgres_url: str, victim: sa.Engine) -> None:
    smuggled = "SELECT 1) TO STDOUT; COMMIT; DELETE FROM victim; COPY (SELECT 1"
    with (
        pytest.raises(psycopg.Error, match="multiple commands"),
        read_only_connection(get_engine(postgres_url)) as conn,
    ):
        list(CopyOut(conn, smuggled))
    assert _rows(victim) == 10


def test_a_server_side_cursor_runs_one_statement_only(postgres_url: str, victim: sa.Engine) -> None:
    with (
        pytest.raises(psycopg.Error),
        read_only_connection(get_engine(postgres_url)) as conn,
    ):
        list(cursor_batches(conn, SMUGGLED, postgres=True))
    assert _rows(victim) == 10


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "SELECT set_config('transaction_read_only', 'off', false)",
            "read-write mode must be set before any query",
        ),
        ("WITH d AS (DELETE FROM victim RETURNING *) SELECT * FROM d", "read-only transaction"),
        ("SELECT nextval('victim_seq')", "read-only transaction"),
    ],
)
def test_a_query_cannot_write_or_turn_its_transaction_read_write(
    postgres_url: str, victim: sa.Engine, sql: str, message: str
) -> None:
    with victim.begin() as conn:
        conn.execute(sa.text("CREATE SEQUENCE victim_seq"))
    engine = get_engine(postgres_url)
    with pytest.raises(psycopg.Error, match=message), read_only_connection(engine) as conn:
        run_user_sql(conn, sql)
    assert _rows(victim) == 10


def test_advisory_locks_and_settings_die_with_the_connection(postgres_url: str) -> None:
    engine = get_engine(postgres_url)
    with read_only_connection(engine) as conn:
        run_user_sql(
            conn,
            "SELECT pg_advisory_lock(4242), set_config('work_mem', '7MB', false), "
            "set_config('default_transaction_read_only', 'off', false)",
        )
    with engine.connect() as pooled:
        assert pooled.execute(sa.text("SHOW work_mem")).scalar_one() != "7MB"
    libpq_url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq_url, autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(4242)").fetchone() == (True,)


def test_statement_timeout_bounds_a_query(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "1")
    with (
        pytest.raises(psycopg.errors.QueryCanceled),
        read_only_connection(get_engine(postgres_url)) as conn,
    ):
        run_user_sql(conn, "SELECT pg_sleep(30)")


def test_the_read_only_role_cannot_read_server_files(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = get_engine(postgres_url)
    sql = "SELECT length(pg_read_file('PG_VERSION')) > 0"
    with read_only_connection(engine) as conn:
        assert run_user_sql(conn, sql).fetchone()[0] is True  # a superuser login can, today
    role = f"batchflows_reader_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" NOLOGIN'))
    try:
        monkeypatch.setenv(READONLY_ROLE_ENV, role)
        with read_only_connection(engine) as conn:
            assert run_user_sql(conn, "SELECT current_user").fetchone()[0] == role
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege),
            read_only_connection(engine) as conn,
        ):
            run_user_sql(conn, sql)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP ROLE "{role}"'))


def test_sqlite_runs_one_statement_only_and_refuses_writes(sqlite_url: str) -> None:
    engine = get_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE victim (id int PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO victim VALUES (1), (2)"))
    with (
        pytest.raises(sqlite3.ProgrammingError, match="one statement"),
        read_only_connection(engine) as conn,
    ):
        run_user_sql(conn, "SELECT 1; DELETE FROM victim")
    with (
        pytest.raises(sqlite3.OperationalError, match="readonly"),
        read_only_connection(engine) as conn,
    ):
        run_user_sql(conn, "WITH d AS (SELECT 1) DELETE FROM victim")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM victim")).scalar_one() == 2
