"""Database selection and one SQLAlchemy engine per database per process.

Every flow takes `database: str | None`, resolved the same way: a value containing `://` is a
SQLAlchemy URL, any other value names a saved `SqlAlchemyConnector` block, and `None` falls
back to `$BATCHFLOWS_DATABASE_URL`, then to the embedded SQLite file `data/batchflows.db`.

Every PostgreSQL session waits at most `$BATCHFLOWS_LOCK_TIMEOUT_SECONDS` (default 60) for a
lock and runs a statement at most `$BATCHFLOWS_STATEMENT_TIMEOUT_SECONDS` (default 3600): a
chunk stuck behind another transaction's lock fails as a transient error (retried, then the
run fails) instead of holding its run forever. 0 turns a limit off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from tasks.errors import InputError

ENV_VAR = "BATCHFLOWS_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///data/batchflows.db"
SQLITE_BUSY_TIMEOUT_SECONDS = 60
LOCK_TIMEOUT_VAR = "BATCHFLOWS_LOCK_TIMEOUT_SECONDS"
STATEMENT_TIMEOUT_VAR = "BATCHFLOWS_STATEMENT_TIMEOUT_SECONDS"
DEFAULT_LOCK_TIMEOUT_SECONDS = 60.0
DEFAULT_STATEMENT_TIMEOUT_SECONDS = 3600.0

Backend = Literal["postgresql", "sqlite"]

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def resolve_database_url(database: str | None) -> URL:
    """Turn the `database` parameter into a SQLAlchemy URL with a supported driver."""
    if database is None or not database.strip():
        raw = os.environ.get(ENV_VAR) or DEFAULT_DATABASE_URL
        return _normalize(_parse_url(raw, source=f"${ENV_VAR}"))
    if "://" in database:
        return _normalize(_parse_url(database, source="parameter 'database'"))
    return _normalize(_url_from_block(database))


def _parse_url(raw: str, *, source: str) -> URL:
    try:
        return make_url(raw)
    except (ArgumentError, ValueError):
        # `from None`: the library's message and the chained traceback may quote the URL,
        # password included, into logs and the flow run's state message.
        raise InputError(
            f"{source}: {redact_url(raw)!r} is not a SQLAlchemy URL (expected "
            "dialect://user@host:port/database, with a numeric port)"
        ) from None


def redact_url(raw: str) -> str:
    """`raw` with whatever precedes the last '@' of its authority (user, password) hidden,
    for messages about a URL that may not even parse."""
    scheme, separator, rest = raw.partition("://")
    if not separator:
        return "***" if "@" in raw or ":" in raw else raw
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return f"{scheme}://{rest}"


def _url_from_block(name: str) -> URL:
    try:
        block = SqlAlchemyConnector.load(name)
    except ValueError:
        # A mistyped URL lands here (no "://"): show no part of it that may be a password.
        raise InputError(
            f"parameter 'database': no SqlAlchemyConnector block named {redact_url(name)!r} "
            "(give a SQLAlchemy URL such as postgresql://user@host/db, or save the block first)"
        ) from None
    info = block.connection_info
    if isinstance(info, ConnectionComponents):
        url: URL = info.create_url()
        return url
    return make_url(str(info))


def _normalize(url: URL) -> URL:
    """Pin the driver batchflows is built on: psycopg 3 for PostgreSQL, pysqlite for SQLite."""
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        return url.set(drivername="sqlite")
    raise InputError(
        f"parameter 'database': {backend!r} is not supported; use a postgresql:// or sqlite:// URL"
    )


def backend_of(engine: Engine) -> Backend:
    """The database family an engine talks to."""
    name = engine.dialect.name
    if name == "postgresql":
        return "postgresql"
    if name == "sqlite":
        return "sqlite"
    raise InputError(f"database dialect {name!r} is not supported")


def get_engine(database: str | None) -> Engine:
    """The process-wide engine for `database`, created on first use (thread safe)."""
    url = resolve_database_url(database)
    cache_key = url.render_as_string(hide_password=False)
    with _engines_lock:
        engine = _engines.get(cache_key)
        if engine is None:
            engine = _create_engine(url)
            _engines[cache_key] = engine
        return engine


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            pool_size=8,
            max_overflow=8,
        )
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    engine = sa.create_engine(url, pool_size=8, max_overflow=16, pool_pre_ping=True)
    limits = postgres_session_limits()
    sa.event.listen(engine, "connect", lambda conn, _record: _postgres_on_connect(conn, limits))
    return engine


def postgres_session_limits() -> dict[str, str]:
    """`lock_timeout` and `statement_timeout` for new PostgreSQL sessions, from the environment."""
    return {
        "lock_timeout": _milliseconds(LOCK_TIMEOUT_VAR, DEFAULT_LOCK_TIMEOUT_SECONDS),
        "statement_timeout": _milliseconds(
            STATEMENT_TIMEOUT_VAR, DEFAULT_STATEMENT_TIMEOUT_SECONDS
        ),
    }


def _milliseconds(variable: str, default: float) -> str:
    raw = os.environ.get(variable, "").strip()
    try:
        seconds = float(raw) if raw else default
    except ValueError:
        raise InputError(f"${variable}: {raw!r} is not a number of seconds") from None
    if not seconds >= 0:
        raise InputError(f"${variable}: {raw!r} must be 0 (no limit) or more seconds")
    return str(round(seconds * 1000))


def _postgres_on_connect(dbapi_connection: Any, limits: dict[str, str]) -> None:
    # Session settings, outside any transaction, so a rollback keeps them.
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    for name, value in limits.items():
        dbapi_connection.execute("SELECT set_config(%s, %s, false)", (name, value))
    dbapi_connection.autocommit = autocommit


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module so BEGIN is explicit (SQLAlchemy's
    # documented recipe); WAL lets readers work while one writer commits.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.close()


def _sqlite_on_begin(connection: sa.Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def raw_connection(engine: Engine) -> Iterator[Any]:
    """A pooled DBAPI connection (psycopg or sqlite3), returned to the pool afterwards."""
    pooled = engine.raw_connection()
    driver = pooled.driver_connection
    try:
        yield driver
    except BaseException:
        if getattr(driver, "broken", False) or getattr(driver, "closed", False):
            pooled.invalidate()
        raise
    finally:
        pooled.close()


def dispose_engines() -> None:
    """Close every pooled connection of this process (tests and forked workers)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
