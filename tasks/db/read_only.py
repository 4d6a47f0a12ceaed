"""Reading user-given SQL without letting it write: a text check, then a read-only session.

Two layers, because either alone has gaps. The text check refuses what is plainly not one
read-only SELECT (several statements, INSERT/UPDATE/DELETE/MERGE, SELECT INTO) with a message
naming the parameter; the session then makes any write the check missed fail in the database:
a READ ONLY transaction on PostgreSQL, `PRAGMA query_only` on SQLite.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import sql as pgsql
from sqlalchemy.engine import Engine

from tasks.db.engine import backend_of
from tasks.errors import InputError

_TOKENS = re.compile(
    r"""
    (?P<comment>--[^\n]*|/\*.*?\*/)
    |(?P<string>[eE]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$)
    |(?P<ident>"(?:[^"]|"")*")
    |(?P<word>[A-Za-z_][A-Za-z_0-9$]*)
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
            raise InputError(f"parameter {parameter!r}: unterminated quote or comment")
        if kind not in ("comment", "space"):
            tokens.append((kind, value))
    return tokens


def check_select(text: str, parameter: str = "query") -> str:
    """`text` without trailing semicolons if it is one read-only SELECT (or WITH ... SELECT).

    Raises InputError naming `parameter` for several statements or a writing statement.
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


def begin_read_only(conn: Any, snapshot: str | None = None) -> None:
    """Make the psycopg transaction just begun REPEATABLE READ, READ ONLY (on `snapshot`)."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    if snapshot is not None:
        statement = pgsql.SQL("SET TRANSACTION SNAPSHOT {}").format(
            pgsql.Literal(check_snapshot_id(snapshot))
        )
        conn.execute(statement)
    conn.execute("SET LOCAL DateStyle = 'ISO'")


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
