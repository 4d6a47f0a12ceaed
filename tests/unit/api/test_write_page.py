"""A pull writes each page itself: a transient database error is retried, anything else is not."""

from __future__ import annotations

from typing import Any

import pytest

from samples.api_server import create_items_table
from tasks.api import pull_pages
from tasks.api.pagination import Page, PagePagination
from tasks.api.pull_plan import PullPlan, make_pull_plan
from tasks.api.upsert import SyncUpdate, UpsertCounts, upsert_page
from tasks.errors import TargetError
from tests.flows.api.helpers import rows

RECORDS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


def _plan(database_url: str) -> PullPlan:
    create_items_table(database_url)
    return make_pull_plan(
        base_url="http://127.0.0.1:9",
        path="/items",
        table="items",
        key=["id"],
        pagination=PagePagination(),
        page_size=2,
        max_pages=1,
        params={},
        incremental=None,
        database=database_url,
    )


def _write(plan: PullPlan) -> UpsertCounts:
    page = Page(request=plan.first, records=RECORDS)
    state = SyncUpdate(source=plan.state_key, last_value=None, cursor="1", records=2)
    return pull_pages.write_page(plan, page, state)


def _failing(errors: list[TargetError]) -> Any:
    def upsert(*args: Any) -> UpsertCounts:
        if errors:
            raise errors.pop(0)
        return upsert_page(*args)

    return upsert


def test_a_transient_error_is_retried_and_the_page_written_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(database_url)
    errors = [TargetError("deadlock detected", transient=True)] * 2
    monkeypatch.setattr(pull_pages, "upsert_page", _failing(list(errors)))

    counts = _write(plan)

    assert (counts.records, counts.inserted) == (2, 2)
    assert rows(database_url, "SELECT id, name FROM items ORDER BY id") == [(1, "a"), (2, "b")]


def test_a_lasting_or_permanent_error_is_raised(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(sqlite_url)
    permanent = TargetError("column name is not text", transient=False)
    monkeypatch.setattr(pull_pages, "upsert_page", _failing([permanent, permanent]))
    with pytest.raises(TargetError, match="column name is not text"):
        _write(plan)

    lasting = [TargetError("database is locked", transient=True)] * pull_pages.WRITE_ATTEMPTS
    monkeypatch.setattr(pull_pages, "upsert_page", _failing(lasting))
    with pytest.raises(TargetError, match="database is locked"):
        _write(plan)
    assert rows(sqlite_url, "SELECT count(*) FROM items") == [(0,)]
