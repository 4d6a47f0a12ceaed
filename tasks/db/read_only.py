"""Reading user-given SQL without letting it write: a text check, then a read-only session.

Layers, because each alone has gaps (docs/security.md):
- the text check refuses what is plainly not one read-only SELECT (several statements,
  INSERT/UPDATE/DELETE/MERGE, SELECT INTO) with a message naming the parameter; it lexes
  quotes, dollar quotes and identifiers the way PostgreSQL does;
- user SQL only ever reaches PostgreSQL through the extended query protocol (a prepared
  statement, a server-side cursor, a COPY sent with PQsendQueryParams), which carries exactly
  one statement, so a `;` the check missed cannot start a second one (sqlite3 refuses a
  second statement in `execute` too);
- the statement runs in a READ ONLY transaction that is always rolled back, under
  `statement_timeout`, as `$BATCHFLOWS_READONLY_ROLE` when set; on SQLite `PRAGMA query_only`;
- the PostgreSQL connection is closed afterwards instead of going back to the pool, so state a
  query leaves in its session (advisory locks, settings) never reaches another job.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql as pgsql
from sqlalchemy.engine import Engine

from tasks.db.engine import backend_of
from tasks.db.schema import check_not_bookkeeping
from tasks.errors import InputError

READONLY_ROLE_ENV = "BATCHFLOWS_READONLY_ROLE"
TIMEOUT_ENV = "BATCHFLOWS_QUERY_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_SECONDS = 3600
# PostgreSQL's identifier characters: ASCII letters, `_`, and every non-ASCII character as a
# letter; digits and `$` may follow. A dollar-quote tag is the same without `$`.
_LETTER = "A-Za-z_\u0080-\U0010ffff"

_TOKENS = re.compile(
    rf"""
    (?P<comment>--[^\n\r]*|/\*(?:[^*/]|\*(?!/)|/(?!\*))*\*/)
    |(?P<string>[eE]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'
        |\$(?P<tag>(?:[{_LETTER}][{_LETTER}0-9]*)?)\$.*?\$(?P=tag)\$)
    |(?P<ident>"(?:[^"]|"")*")
    |(?P<word>[{_LETTER}][{_LETTER}0-9$]*)
    |(?P<space>\s+)
    |(?P<other>.)
    """,
    re.DOTALL | re.VERBOSE,
)
# Words that only a writing statement has: a data-modifying CTE or SELECT INTO.
_WRITES = {"INSERT", "UPDATE", "DELETE", "MERGE", "INTO"}
_STARTS = {"SELECT", "WITH"}
_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9]+)?$")


def _tokens(text: str, parameter: str) -> list[tuple[str, str]]:
    """(kind, text) of each token outside comments; an unterminated quote is refused."""
    tokens: list[tuple[str, str]] = []
    for match in _TOKENS.finditer(text):
        kind = match.lastgroup or "other"
        if kind == "tag":
            kind = "string"
        value = match.group(kind)
        if kind == "other" and (value in ("'", '"') or text.startswith("/*", match.start())):
            raise InputError(
                f"parameter {parameter!r}: unterminated quote or comment (nested /* comments "
                "are not accepted)"
            )
        if kind not in ("comment", "space"):
            tokens.append((kind, value))
    return tokens


def check_select(text: str, parameter: str = "query", *, bookkeeping: bool = False) -> str:
    """`text` without trailing semicolons if it is one read-only SELECT (or WITH ... SELECT).

    Raises InputError naming `parameter` for several statements, a writing statement, or a
    `batchflows_*` table unless `bookkeeping` (only for SQL shipped with batchflows).
    """
    tokens = _tokens(text, parameter)
    while tokens and tokens[-1] == ("other", ";"):
        tokens.pop()
    if not tokens:
        raise InputError(f"parameter {parameter!r}: the query is empty")
    if ("other", ";") in tokens:
        raise InputError(
            f"parameter {parameter!r}: only one statement is allowed; remove the ';' "
            "between statements"
        )
    words = [value.upper() for kind, value in tokens if kind == "word"]
    first = next((value for kind, value in tokens if kind != "other" or value != "("), "")
    if first.upper() not in _STARTS:
        raise InputError(
            f"parameter {parameter!r}: only a read-only SELECT (or WITH ... SELECT) is allowed, "
            f"not {first!r}"
        )
    writes = sorted(_WRITES.intersection(words))
    if writes:
        raise InputError(
            f"parameter {parameter!r}: only a read-only SELECT is allowed; it contains "
            f"{', '.join(writes)} (quote a column of that name)"
        )
    if not bookkeeping:
        for kind, value in tokens:
            if kind in ("word", "ident"):
                check_not_bookkeeping(value.strip('"').replace('""', '"'), parameter)
    return _strip_trailing(text)


def check_condition(text: str, parameter: str = "where") -> str:
    """A WHERE condition that stays one parenthesised read-only expression."""
    tokens = _tokens(text, parameter)
    if not tokens:
        raise InputError(f"parameter {parameter!r}: the condition is empty")
    depth = 0
    for kind, value in tokens:
        if kind == "other" and value == "(":
            depth += 1
        elif kind == "other" and value == ")":
            depth -= 1
        if depth < 0 or (kind == "other" and value == ";"):
            raise InputError(
                f"parameter {parameter!r}: {text!r} is not one condition (unbalanced ')' or ';')"
            )
    if depth != 0:
        raise InputError(f"parameter {parameter!r}: {text!r} has an unclosed '('")
    check_select(f"SELECT 1 WHERE {text}", parameter)
    return text.strip()


def _strip_trailing(text: str) -> str:
    stripped = text.strip()
    while True:
        without_comment = re.sub(r"(--[^\n]*|/\*.*?\*/|\s+)$", "", stripped, flags=re.DOTALL)
        without_semicolon = without_comment.rstrip(";").rstrip()
        if without_semicolon == stripped:
            return stripped
        stripped = without_semicolon


def check_snapshot_id(snapshot: str) -> str:
    """A `pg_export_snapshot()` id, checked before it reaches SQL as a literal."""
    if not _SNAPSHOT_ID.match(snapshot):
        raise InputError(f"{snapshot!r} is not a PostgreSQL snapshot id")
    return snapshot


def timeout_seconds() -> int:
    """The `statement_timeout` of user SQL: `$BATCHFLOWS_QUERY_TIMEOUT_SECONDS`, default 1 h."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = int(raw) if raw else DEFAULT_TIMEOUT_SECONDS
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise InputError(f"${TIMEOUT_ENV}: {raw!r} must be a whole number of seconds, 1 or more")
    return seconds


def session_settings() -> list[str]:
    """The statements, after SET TRANSACTION, that fence user SQL in its transaction.

    `SET SESSION CHARACTERISTICS` keeps the session read-only should its transaction ever end
    early (it is rolled back with it otherwise); `standard_conforming_strings` makes the
    server read backslashes in quotes the way the text check did.
    """
    statements = [
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
        "SET LOCAL standard_conforming_strings = on",
        f"SET LOCAL statement_timeout = {timeout_seconds() * 1000}",
        "SET LOCAL DateStyle = 'ISO'",
    ]
    role = os.environ.get(READONLY_ROLE_ENV, "").strip()
    if role:
        statements.append(
            pgsql.SQL("SET LOCAL ROLE {}").format(pgsql.Identifier(role)).as_string(None)
        )
    return statements


def begin_read_only(conn: Any, snapshot: str | None = None) -> None:
    """Make the psycopg transaction just begun REPEATABLE READ, READ ONLY (on `snapshot`)."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    if snapshot is not None:
        statement = pgsql.SQL("SET TRANSACTION SNAPSHOT {}").format(
            pgsql.Literal(check_snapshot_id(snapshot))
        )
        conn.execute(statement)
    for setting in session_settings():
        conn.execute(setting)


@contextmanager
def postgres_read_only(conn: Any, snapshot: str | None = None) -> Iterator[Any]:
    """A REPEATABLE READ, READ ONLY transaction on a psycopg connection, rolled back after."""
    conn.rollback()
    with conn.transaction(force_rollback=True):
        begin_read_only(conn, snapshot)
        yield conn


@contextmanager
def sqlite_query_only(conn: Any) -> Iterator[Any]:
    """A sqlite3 connection that refuses writes, in one read transaction (one snapshot)."""
    cursor = conn.cursor()
    cursor.execute("PRAGMA query_only = ON")
    try:
        cursor.execute("BEGIN")
        try:
            yield conn
        finally:
            cursor.execute("ROLLBACK")
    finally:
        cursor.execute("PRAGMA query_only = OFF")
        cursor.close()


@contextmanager
def read_only_session(engine: Engine, conn: Any, snapshot: str | None = None) -> Iterator[Any]:
    """`conn` in a read-only transaction of its backend (PostgreSQL: on `snapshot`)."""
    if backend_of(engine) == "postgresql":
        with postgres_read_only(conn, snapshot):
            yield conn
    else:
        with sqlite_query_only(conn):
            yield conn


@contextmanager
def throwaway_connection(engine: Engine) -> Iterator[Any]:
    """A DBAPI connection for user SQL: on PostgreSQL it is closed afterwards, never pooled,
    so advisory locks or settings a query leaves in its session die with it."""
    pooled = engine.raw_connection()
    try:
        yield pooled.driver_connection
    finally:
        if backend_of(engine) == "postgresql":
            pooled.invalidate()
        pooled.close()


@contextmanager
def read_only_connection(engine: Engine, snapshot: str | None = None) -> Iterator[Any]:
    """A throwaway connection in a read-only session: where user SQL runs."""
    with throwaway_connection(engine) as conn, read_only_session(engine, conn, snapshot):
        yield conn


def run_user_sql(conn: Any, text: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
    """A cursor that has executed `text` (which holds user SQL, with `params` bound) as exactly
    one statement.

    psycopg sends a text without parameters through the simple protocol, which runs every
    statement in it; `prepare=True` sends it as a prepared statement instead (the extended
    protocol), which PostgreSQL refuses if it holds more than one. sqlite3 `execute` refuses
    a second statement by itself.
    """
    cursor = conn.cursor()
    if isinstance(conn, psycopg.Connection):
        cursor.execute(text, params or None, prepare=True)
    else:
        cursor.execute(text, params)
    return cursor
