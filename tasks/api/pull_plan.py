"""Plan a pull: check the parameters and the target table, read the stored mark, first request.

Everything that can be wrong with the parameters is found here, before the first request.
"""

from __future__ import annotations

import hashlib
import json

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from tasks.api.pagination import PageRequest, Pagination, Scalar
from tasks.api.upsert import RecordTarget, read_sync_state
from tasks.api.watermark import Incremental
from tasks.common.retry import transient_retries
from tasks.db.engine import get_engine
from tasks.db.schema import reflect_table
from tasks.errors import InputError
from tasks.http.client import endpoint
from tasks.http.redact import redact_url

PLAN_RETRIES = 3
READABLE_SOURCE_CHARS = 400


class PullPlan(BaseModel):
    """Everything the pages of one pull need to know, serialisable."""

    source: str
    state_key: str
    database: str | None
    target: RecordTarget
    pagination: Pagination
    page_size: int
    max_pages: int
    first: PageRequest
    incremental: Incremental | None
    stored_mark: str | None


def source_name(table: str, url: str, params: dict[str, Scalar]) -> str:
    """A pull's identity, for people: target table, URL (redacted) and fixed query."""
    full = httpx.URL(url).copy_merge_params(dict(sorted(params.items())))
    return redact_url(f"{table} <- GET {full}")


def state_key(table: str, url: str, params: dict[str, Scalar]) -> str:
    """The `batchflows_sync_state` key: the readable start of the identity and its digest.

    The digest covers the whole identity (however long, secrets included), so two pulls never
    share a watermark; the key stays within the column's 512 characters.
    """
    identity = json.dumps([table, url, sorted(params.items())])
    digest = hashlib.sha256(identity.encode()).hexdigest()
    return f"{source_name(table, url, params)[:READABLE_SOURCE_CHARS]} sha256:{digest}"


def make_pull_plan(
    *,
    base_url: str,
    path: str,
    table: str,
    key: list[str],
    pagination: Pagination,
    page_size: int,
    max_pages: int,
    params: dict[str, Scalar],
    incremental: Incremental | None,
    database: str | None,
) -> PullPlan:
    """Check the parameters against the table, read the stored mark, build the first request."""
    for name, value in (("page_size", page_size), ("max_pages", max_pages)):
        if value < 1:
            raise InputError(f"parameter {name!r}: {value} must be at least 1")
    url = endpoint(base_url, path)
    engine = get_engine(database)
    target = RecordTarget.check(reflect_table(engine, table), key)
    stored_mark, _cursor = read_sync_state(engine, state_key(table, url, params))
    query = dict(params)
    if incremental is not None:
        query |= incremental.query(json.loads(stored_mark) if stored_mark else None)
    return PullPlan(
        source=source_name(table, url, params),
        state_key=state_key(table, url, params),
        database=database,
        target=target,
        pagination=pagination,
        page_size=page_size,
        max_pages=max_pages,
        first=pagination.first(url, query, page_size),
        incremental=incremental,
        stored_mark=stored_mark,
    )


plan_pull = task(name="plan-pull", cache_policy=NO_CACHE, **transient_retries(PLAN_RETRIES))(
    make_pull_plan
)
