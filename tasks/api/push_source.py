"""What a push sends: rows of a table or a query, streamed, turned into deliveries.

A table is read in key order, so batches (and their idempotency keys) are the same on every
rerun; a query is run as given (give it an ORDER BY for stable batches) in a read-only
transaction. Rows are streamed (a server-side cursor on PostgreSQL, `fetchmany` on SQLite, in
WAL mode so the dead-letter writes of the same run are not blocked), so memory stays flat.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from string import Formatter
from typing import Any
from urllib.parse import quote as url_quote

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from tasks.api.delivery import Delivery
from tasks.api.idempotency import idempotency_key, jsonable
from tasks.common.retry import transient_retries
from tasks.db.engine import backend_of, get_engine
from tasks.db.errors import database_errors
from tasks.db.read_only import (
    check_select,
    postgres_read_only,
    read_only_connection,
    run_user_sql,
    sqlite_query_only,
    throwaway_connection,
)
from tasks.db.schema import qualified, quote, reflect_table
from tasks.errors import InputError
from tasks.http.auth import plain_headers
from tasks.http.client import endpoint
from tasks.http.redact import redact_url

FETCH_ROWS = 1000
PLAN_RETRIES = 3


class PushPlan(BaseModel):
    """A checked push: the rows to read and how each batch of them becomes a request."""

    database: str | None
    sql: str
    source: str
    total: int
    method: str
    url: str
    url_fields: list[str]
    key: list[str]
    batch_size: int
    headers: dict[str, str]

    def deliveries(self, rows: Iterator[dict[str, Any]]) -> Iterator[Delivery]:
        """One delivery per record, or per batch of `batch_size` records."""
        while records := [jsonable(row) for row in itertools.islice(rows, self.batch_size)]:
            keys = [[record[name] for name in self.key] for record in records]
            url = self.url
            if self.url_fields:
                url = url.format_map({f: path_segment(records[0][f]) for f in self.url_fields})
            single = self.batch_size == 1
            payload: Any = records[0] if single else records
            record_key = keys[0] if single else keys
            yield Delivery(
                method=self.method,
                url=url,
                idempotency_key=idempotency_key(self.method, url, record_key, payload),
                record_key=record_key,
                payload=payload,
                headers=self.headers,
                records=len(records),
            )


def make_push_plan(
    *,
    table: str | None,
    query: str | None,
    base_url: str,
    path: str,
    method: str,
    key: list[str],
    batch_size: int,
    headers: dict[str, str] | None,
    database: str | None,
) -> PushPlan:
    """Check the parameters against the rows to send; count them."""
    if (table is None) == (query is None or not query.strip()):
        raise InputError("parameters 'table' and 'query': give exactly one of them")
    if batch_size < 1:
        raise InputError(f"parameter 'batch_size': {batch_size} must be at least 1")
    url = endpoint(base_url, path)
    url_fields = template_fields(url)
    if url_fields and batch_size > 1:
        raise InputError(
            f"parameter 'path': {{{url_fields[0]}}} names a record field, which only works "
            "with batch_size=1 (one request per record)"
        )
    engine = get_engine(database)
    if table is not None:
        spec = reflect_table(engine, table)
        sql = f"SELECT * FROM {qualified(engine.dialect, spec)}"
        missing = [name for name in key if name not in {c.name for c in spec.columns}]
        if not missing:
            sql += " ORDER BY " + ", ".join(quote(engine.dialect, name) for name in key)
        source = f"table {spec.display_name}"
    else:
        sql = check_select(query or "", "query")
        source = "query"
    columns, total = _describe(engine, sql)
    for parameter, names in (("key", key), ("path", url_fields)):
        absent = [name for name in names if name not in columns]
        if absent:
            raise InputError(
                f"parameter {parameter!r}: the {source} has no column "
                f"{', '.join(map(repr, absent))} (it has {', '.join(columns)})"
            )
    return PushPlan(
        database=database,
        sql=sql,
        source=source,
        total=total,
        method=method.upper(),
        url=url,
        url_fields=url_fields,
        key=key,
        batch_size=batch_size,
        headers=plain_headers(headers),
    )


def template_fields(url: str) -> list[str]:
    """The record fields a path template names, e.g. `id` in `/users/{id}`; checked.

    A field is a plain name: no attribute or index access (`{id.__class__}`), no format spec
    or conversion, so a template can only insert values, never evaluate anything.
    """
    try:
        parts = list(Formatter().parse(url))
    except ValueError as exc:
        raise InputError(
            f"parameter 'path': {redact_url(url)!r} is not a valid template ({exc}); name a "
            "record field as {field} and write a literal brace as {{ or }}"
        ) from exc
    fields = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name or any(c in name for c in ".[]") or spec or conversion:
            raise InputError(
                f"parameter 'path': {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} is not a plain record field; write "
                "{column_name}, nothing else between the braces"
            )
        fields.append(name)
    return fields


def path_segment(value: Any) -> str:
    """`value` percent-encoded as one path segment: `/`, `?`, `#` and dot segments included.

    `..` becomes `%2E%2E`, so a record cannot move the request up the path (`/users/..`
    would otherwise be sent to `/`).
    """
    segment = url_quote(str(value), safe="")
    if not segment:
        raise InputError("parameter 'path': a record has an empty value for a path field")
    return segment.replace(".", "%2E") if segment in (".", "..") else segment


plan_push = task(name="plan-push", cache_policy=NO_CACHE, **transient_retries(PLAN_RETRIES))(
    make_push_plan
)


def _describe(engine: Engine, sql: str) -> tuple[list[str], int]:
    """The columns of `sql` and how many rows it returns."""
    with database_errors("parameter 'query'"), read_only_connection(engine) as conn:
        cur = run_user_sql(conn, f"SELECT * FROM ({sql}) batchflows_q LIMIT 0")
        columns = [d[0] for d in cur.description]
        cur = run_user_sql(conn, f"SELECT count(*) FROM ({sql}) batchflows_q")
        total = int(cur.fetchone()[0])
    return columns, total


def stream_rows(engine: Engine, sql: str) -> Iterator[dict[str, Any]]:
    """The rows of `sql` as dicts, read `FETCH_ROWS` at a time without write locks."""
    with database_errors("reading the rows to push"), throwaway_connection(engine) as conn:
        if backend_of(engine) == "postgresql":
            yield from _postgres_rows(conn, sql)
        else:
            yield from _sqlite_rows(conn, sql)


def _postgres_rows(conn: Any, sql: str) -> Iterator[dict[str, Any]]:
    with postgres_read_only(conn), conn.cursor(name="batchflows_push") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(sql)
        names = [d[0] for d in cur.description]
        for row in cur:
            yield dict(zip(names, row, strict=True))


def _sqlite_rows(conn: Any, sql: str) -> Iterator[dict[str, Any]]:
    with sqlite_query_only(conn):
        cur = conn.cursor()
        cur.execute(sql)
        names = [d[0] for d in cur.description]
        while rows := cur.fetchmany(FETCH_ROWS):
            for row in rows:
                yield dict(zip(names, row, strict=True))
