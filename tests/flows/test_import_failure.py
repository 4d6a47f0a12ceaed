"""An import that stops records why, wherever the exception was raised, and only once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.db import get_engine
from tasks.imports import steps
from tasks.imports.ledger import mark_failed
from tasks.imports.plan import ImportPlan
from tests.flows.helpers import OUTSIDE_A_FLOW_RUN, make_users, plan_users, query


class Signalled(BaseException):
    """Stands in for Prefect's TerminationSignal: a BaseException without a message."""


def _plan(tmp_path: Path, url: str) -> ImportPlan:
    users = make_users(tmp_path, url, 60)
    return plan_users(users.path, url, chunk_size=20, import_id="stopping")


def _status(url: str) -> tuple[object, ...]:
    return tuple(query(url, "SELECT status, error FROM batchflows_imports")[0])


@OUTSIDE_A_FLOW_RUN
def test_a_signal_between_two_chunks_marks_the_import_failed(
    tmp_path: Path, database_url: str
) -> None:
    plan = _plan(tmp_path, database_url)

    def stopped_after_the_first_chunk() -> None:
        with steps.failure_recorded(plan):
            for counts in steps.run_in_order(plan, steps.chunk_cutter(plan), 2):
                if counts.index == 0:
                    raise Signalled  # outside the chunk window: while the flow reports progress

    with pytest.raises(Signalled):
        stopped_after_the_first_chunk()
    assert _status(database_url) == ("failed", "stopped by Signalled")
    assert query(database_url, "SELECT count(*) FROM batchflows_chunks")[0][0] >= 1


@OUTSIDE_A_FLOW_RUN
def test_the_first_reason_stands_and_a_finished_import_stays_finished(
    tmp_path: Path, database_url: str
) -> None:
    plan = _plan(tmp_path, database_url)
    engine = get_engine(database_url)
    mark_failed(engine, "stopping", "chunk 3: deadlock detected")
    mark_failed(engine, "stopping", "stopped by TerminationSignal")
    assert _status(database_url) == ("failed", "chunk 3: deadlock detected")

    resumed = _plan(tmp_path, database_url)  # a rerun takes the import over again
    assert _status(database_url) == ("running", None)
    with steps.failure_recorded(resumed):
        for _ in steps.run_in_order(resumed, steps.chunk_cutter(resumed), 2):
            pass
        steps.finish_import.fn(resumed)
    mark_failed(engine, "stopping", "stopped by TerminationSignal")
    assert _status(database_url)[0] == "succeeded"
    assert plan.job.import_id == resumed.job.import_id
