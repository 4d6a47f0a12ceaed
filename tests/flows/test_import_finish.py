"""finish-import retries a transient database error, never its own check of the ledger."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from tasks.imports import ImportTotals, steps
from tasks.imports.ledger import ledger_totals, mark_finished
from tasks.imports.plan import ImportPlan
from tests.flows.helpers import make_users, plan_users, query

# The task's own retry options, without the back-off pause.
finish_now = steps.finish_import.with_options(retry_delay_seconds=0)


@flow
def finish(plan: ImportPlan, apply_chunks: bool) -> ImportTotals:
    """Apply the plan's chunks unless told not to, then run finish-import."""
    if apply_chunks:
        for _ in steps.run_in_order(plan, steps.chunk_cutter(plan), 2):
            pass
    return finish_now(plan)


def _plan(tmp_path: Path, url: str) -> ImportPlan:
    users = make_users(tmp_path, url, 60)
    return plan_users(users.path, url, chunk_size=25, import_id="finish-test")


def test_a_ledger_that_does_not_add_up_fails_at_once_without_retries(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(tmp_path, sqlite_url)  # no chunk applied: the ledger counts 0 of 60 rows
    calls: list[str] = []

    def counted(*args: Any) -> ImportTotals:
        calls.append("ledger_totals")
        return ledger_totals(*args)

    monkeypatch.setattr(steps, "ledger_totals", counted)
    with pytest.raises(AssertionError, match="the ledger counts 0 rows but the file has 60"):
        finish(plan, apply_chunks=False)
    assert calls == ["ledger_totals"]
    assert query(sqlite_url, "SELECT status FROM batchflows_imports")[0][0] == "running"


def test_a_transient_database_error_while_finishing_is_retried(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(tmp_path, sqlite_url)
    calls: list[str] = []

    def locked_once(*args: Any) -> None:
        calls.append("mark_finished")
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        mark_finished(*args)

    monkeypatch.setattr(steps, "mark_finished", locked_once)
    totals = finish(plan, apply_chunks=True)
    assert calls == ["mark_finished", "mark_finished"]
    assert totals.total == 60
    assert totals.chunks == 3
    assert query(sqlite_url, "SELECT status FROM batchflows_imports")[0][0] == "succeeded"
