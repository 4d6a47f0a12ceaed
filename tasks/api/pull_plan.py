"""Plan a pull: check the parameters and the target table, read the stored mark, first request.

Everything that can be wrong with the parameters is found here, before the first request.
"""

from __future__ import annotations

import json

from prefect import task
from pydantic import BaseModel

from tasks.api.pagination import PageRequest, Pagination, Scalar, first_request
from tasks.api.upsert import RecordTarget, read_sync_state
from tasks.api.watermark import Incremental
from tasks.db.engine import get_engine
from tasks.db.schema import reflect_table
from tasks.errors import InputError

SOURCE_CHARS = 512


class PullPlan(BaseModel):
    """Everything the pages of one pull need to know, serialisable."""

    source: str
    database: str | None
    target: RecordTarget
    pagination: Pagination
    page_size: int
    first: PageRequest
    incremental: Incremental | None
    stored_mark: str | None


def source_name(table: str, url: str, params: dict[str, Scalar]) -> str:
    """The `batchflows_sync_state` key of a pull: target table, URL and fixed query."""
    query = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    text = f"{table} <- GET {url}" + (f"?{query}" if query else "")
    return text[:SOURCE_CHARS]


def make_pull_plan(
    *,
    url: str,
    table: str,
    key: list[str],
    pagination: Pagination,
    page_size: int,
    params: dict[str, Scalar],
    incremental: Incremental | None,
    database: str | None,
) -> PullPlan:
    """Check the parameters against the table, read the stored mark, build the first request."""
    if page_size < 1:
        raise InputError(f"parameter 'page_size': {page_size} must be at least 1")
    engine = get_engine(database)
    target = RecordTarget.check(reflect_table(engine, table), key)
    source = source_name(table, url, params)
    stored_mark, _cursor = read_sync_state(engine, source)
    query = dict(params)
    if incremental is not None:
        query |= incremental.query(json.loads(stored_mark) if stored_mark else None)
    return PullPlan(
        source=source,
        database=database,
        target=target,
        pagination=pagination,
        page_size=page_size,
        first=first_request(pagination, url, query, page_size),
        incremental=incremental,
        stored_mark=stored_mark,
    )


plan_pull = task(name="plan-pull")(make_pull_plan)
