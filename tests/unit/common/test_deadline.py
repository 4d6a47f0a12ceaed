"""The shared whole-run time limit: raised where the body stands, in any thread, schema > 0."""

from __future__ import annotations

import threading
import time

import pytest

from flows.api_pull import api_pull
from flows.api_push import api_push
from flows.cleanup import cleanup
from flows.export_table import export_table
from flows.import_csv import import_csv
from flows.import_csv_dask import import_csv_dask
from flows.replay_dead_letters import replay_dead_letters
from flows.report import report
from flows.send_emails import send_emails
from tasks.common.deadline import RunTimedOut, RunTimedOutParameter, run_deadline, with_run_timeout


@with_run_timeout
def sleeper(seconds: float, timeout_seconds: float = 60) -> str:
    """Sleep `seconds`, limited to `timeout_seconds`."""
    time.sleep(seconds)
    return "done"


@pytest.mark.timeout(30)
def test_a_body_past_its_limit_gets_run_timed_out_naming_the_parameter() -> None:
    started = time.monotonic()
    with pytest.raises(RunTimedOut) as caught:
        sleeper(20, timeout_seconds=0.3)
    assert time.monotonic() - started < 10
    assert "timeout_seconds=0.3" in str(caught.value)
    assert "rerun" in str(caught.value)


@pytest.mark.timeout(30)
def test_a_body_within_its_limit_returns_and_leaves_no_alarm_behind() -> None:
    assert sleeper(0.01, timeout_seconds=0.5) == "done"
    time.sleep(0.7)  # an alarm left armed would fire here


@pytest.mark.timeout(30)
def test_the_limit_also_holds_outside_the_main_thread() -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with run_deadline(0.3, "test"):
                for _ in range(200):  # Python-level work, where the exception can land
                    time.sleep(0.05)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], RunTimedOut)


def test_a_limit_that_is_not_positive_is_refused_by_name() -> None:
    with pytest.raises(RunTimedOutParameter, match="'timeout_seconds': 0 must be greater than 0"):
        sleeper(0, timeout_seconds=0)


def test_a_flow_without_the_parameter_cannot_adopt_the_limit() -> None:
    def no_limit(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="no parameter 'timeout_seconds'"):
        with_run_timeout(no_limit)


@pytest.mark.parametrize(
    ("flow", "tasks"),
    [
        (import_csv, ["chunk_timeout_seconds"]),
        (import_csv_dask, ["chunk_timeout_seconds"]),
        (export_table, ["part_timeout_seconds"]),
        (cleanup, []),
        (api_pull, []),
        (api_push, []),
        (replay_dead_letters, []),
        (report, []),
        (send_emails, []),
    ],
)
def test_every_flow_has_a_positive_whole_run_limit_in_its_schema(
    flow: object, tasks: list[str]
) -> None:
    properties = flow.parameters.properties  # type: ignore[attr-defined]
    for name in ["timeout_seconds", *tasks]:
        assert properties[name]["exclusiveMinimum"] == 0
        assert properties[name]["default"] > 0
        assert properties[name]["description"]
