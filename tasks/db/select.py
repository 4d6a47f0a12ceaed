"""Run user-given SELECTs with bound parameters inside the read-only session.

Reports and e-mail campaigns read with SQL their users wrote. The text goes through
`check_select`, values are bound by the driver (written `:name` in the SQL, compiled by
SQLAlchemy into the driver's own placeholder style), and every statement runs in the
backend's read-only session, so a value can never become SQL and nothing can be written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tasks.db.errors import database_errors
from tasks.db.read_only import check_select, read_only_connection, run_user_sql
from tasks.db.schema import quote, split_table_name
from tasks.errors import InputError


@dataclass(frozen=True)
class Rows:
    """The result of one query: column names and rows (tuples), in the query's order."""

    name: str
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        """Each row as a dict keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class Statement:
    """One checked SELECT and its name (for messages), with `:name` placeholders."""

    name: str
    sql: str


def table_select(engine: Engine, table: str) -> str:
    """`SELECT * FROM <table>` with the (optionally schema-qualified) name quoted."""
    schema, name = split_table_name(table)
    quoted = quote(engine.dialect, name)
    return (
        f"SELECT * FROM {quote(engine.dialect, schema)}.{quoted}"
        if schema
        else (f"SELECT * FROM {quoted}")
    )


def parameters_of(sql: str) -> set[str]:
    """The `:name` placeholders a statement uses."""
    return set(sa.text(sql).compile().params)


def compile_bound(
    engine: Engine, sql: str, values: Mapping[str, Any], parameter: str
) -> tuple[str, Sequence[Any] | Mapping[str, Any]]:
    """The driver's SQL and parameters for `sql` with `values` bound (unused values ignored)."""
    needed = parameters_of(sql)
    missing = sorted(needed - set(values))
    if missing:
        raise InputError(f"{parameter}: no value for {', '.join(':' + m for m in missing)}")
    clause = sa.text(sql).bindparams(
        *(sa.bindparam(k, values[k], type_=sa.types.NullType()) for k in sorted(needed))
    )
    compiled = clause.compile(dialect=engine.dialect)
    bound = compiled.construct_params()
    if compiled.positiontup is not None:
        return compiled.string, [bound[name] for name in compiled.positiontup]
    return compiled.string, bound


def fetch_all(
    engine: Engine,
    statements: Sequence[Statement],
    values: Mapping[str, Any],
    *,
    bookkeeping: bool = False,
) -> list[Rows]:
    """Every statement's rows, read in one read-only transaction (one consistent snapshot).

    Each runs as exactly one statement on a throwaway connection (`run_user_sql`); only
    statements shipped with batchflows pass `bookkeeping=True` to read `batchflows_*` tables.
    """
    compiled = [
        (
            s.name,
            *compile_bound(
                engine, check_select(s.sql, s.name, bookkeeping=bookkeeping), values, s.name
            ),
        )
        for s in statements
    ]
    results: list[Rows] = []
    with read_only_connection(engine) as conn:
        for name, sql, bound in compiled:
            with database_errors(name):
                cur = run_user_sql(conn, sql, bound)
                columns = [d[0] for d in cur.description]
                results.append(Rows(name, columns, [tuple(r) for r in cur.fetchall()]))
                cur.close()
    return results
