"""Run progress in the Prefect UI, written on its own thread: in order, never fatal."""

from __future__ import annotations

import logging
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import Artifact

from tasks.common.progress import RunProgress, fenced

pytestmark = pytest.mark.timeout(120)


def _artifacts(flow_run_id: UUID | None) -> list[Artifact]:
    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


@flow
def many_updates(count: int) -> None:
    progress = RunProgress("many updates", "a flow that reports faster than the API answers")
    for number in range(count):
        progress.update(100.0 * number / count, {"number": number}, force=True)
    progress.table("many-updates-summary", [{"updates": count}], "the summary")
    progress.close()


def test_the_ui_ends_on_the_last_update_however_many_were_replaced() -> None:
    state = many_updates(200, return_state=True)

    artifacts = _artifacts(state.state_details.flow_run_id)
    assert sorted(a.type or "" for a in artifacts) == ["markdown", "progress", "table"]
    assert next(a for a in artifacts if a.type == "progress").data == 99.5
    assert "| 199 |" in str(next(a for a in artifacts if a.type == "markdown").data)
    assert "200" in str(next(a for a in artifacts if a.type == "table").data)


@flow
def a_write_fails() -> str:
    progress = RunProgress("a write fails", "a table the API cannot take, then one it can")
    progress.table("unwritable", [{"value": object()}], "not JSON")
    progress.table("written", [{"value": 1}], "JSON")
    progress.close()
    return "done"


def test_a_write_that_fails_is_logged_and_neither_fails_the_run_nor_stops_later_writes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        state = a_write_fails(return_state=True)

    assert state.is_completed()
    assert state.result() == "done"
    keys = [a.key for a in _artifacts(state.state_details.flow_run_id) if a.key]
    assert keys == ["written"]
    assert "progress of 'a write fails' not shown in the UI" in caplog.text


def test_outside_a_flow_run_progress_writes_nothing_and_never_fails() -> None:
    progress = RunProgress("plain call", "no flow run")
    progress.update(50.0, {"done": 1}, force=True)
    progress.table("plain", [{"done": 1}], "no flow run")
    progress.link("plain", "file:///nowhere", "nowhere", "no flow run")
    progress.close()

    assert (progress.progress_id, progress.status_id) == (None, None)


@flow
def link_with_a_loose_key() -> None:
    progress = RunProgress("link", "a report whose name has an underscore and capitals")
    progress.link("report-Daily_Sales", "file:///tmp/report.pdf", "the report", "expires soon")
    progress.close()


def test_a_link_key_is_made_valid_for_prefect_rather_than_failing_the_run() -> None:
    state = link_with_a_loose_key(return_state=True)

    links = [a for a in _artifacts(state.state_details.flow_run_id) if a.key]
    assert [a.key for a in links] == ["report-daily-sales"]
    assert "file:///tmp/report.pdf" in str(links[0].data)


HOSTILE = "bad value ``` ![pixel](http://evil.example/p.png) | <script>x</script>"


@flow
def fails_midway() -> None:
    with RunProgress("fails midway", "a run that stops with counts on the way") as progress:
        progress.update(10.0, {"done": 1}, force=True)
        progress.update(70.0, {"done": 7})  # throttled: not written while the run lives
        raise ValueError(HOSTILE)


def test_a_failed_run_shows_why_it_stopped_above_its_last_counts() -> None:
    state = fails_midway(return_state=True)

    assert state.is_failed()
    artifacts = _artifacts(state.state_details.flow_run_id)
    status = str(next(a for a in artifacts if a.type == "markdown").data)
    assert "**Stopped:**" in status
    assert fenced(f"ValueError: {HOSTILE}") in status
    assert "| 7 |" in status
    assert next(a for a in artifacts if a.type == "progress").data == 70.0


def test_a_reason_that_holds_markdown_stays_inside_its_fence() -> None:
    block = fenced(HOSTILE)

    fence = block.split("text", 1)[0]
    assert fence == "````"
    assert block.endswith("\n" + fence)
    assert block.count(fence) == 2
