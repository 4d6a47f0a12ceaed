"""Database driver errors as `TargetError`, marked transient when a retry may succeed.

One translation for both backends and for SQLAlchemy's wrapped errors alike, so every writer
reports the same way: deadlocks,
serialisation failures, lost connections and a busy SQLite are transient; anything else (a
constraint, a value the column refuses) is not.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg.errors
from sqlalchemy.exc import DBAPIError

from tasks.errors import TargetError

_TRANSIENT_POSTGRES = (
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.LockNotAvailable,
    psycopg.OperationalError,
)


def _transient(error: BaseException) -> bool:
    """Whether a retry of the same transaction may succeed (SQLAlchemy's wrapper unwrapped)."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        return _transient(error.orig)
    if isinstance(error, sqlite3.OperationalError):
        return "locked" in str(error) or "busy" in str(error)
    return isinstance(error, _TRANSIENT_POSTGRES)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its class name when it has none), for a report."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


@contextmanager
def database_errors(where: str) -> Iterator[None]:
    """Re-raise driver errors inside the block as `TargetError` prefixed with `where`."""
    try:
        yield
    except (psycopg.Error, sqlite3.Error, DBAPIError) as exc:
        transient = _transient(exc)
        original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        retry = " (transient, will retry)" if transient else ""
        raise TargetError(
            f"{where}: the database refused: {first_line(original)}{retry}", transient=transient
        ) from exc
