"""Prefect states in the service's words, and failure messages safe to show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.schemas.objects import StateType

from service.status import STATUSES, job_status, may_have_ledger, one_line_error

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state_type", "name", "expected"),
    [
        (None, None, "queued"),
        (StateType.SCHEDULED, "Scheduled", "queued"),
        (StateType.SCHEDULED, "AwaitingConcurrencySlot", "queued"),
        (StateType.SCHEDULED, "AwaitingRetry", "delayed"),
        (StateType.PENDING, "Pending", "active"),
        (StateType.RUNNING, "Running", "active"),
        (StateType.COMPLETED, "Completed", "completed"),
        (StateType.FAILED, "Failed", "failed"),
        (StateType.CRASHED, "Crashed", "failed"),
        (StateType.CANCELLING, "Cancelling", "cancelling"),
        (StateType.CANCELLED, "Cancelled", "cancelled"),
        (StateType.PAUSED, "Suspended", "paused"),
    ],
)
def test_each_state_maps_to_one_status(
    state_type: StateType | None, name: str | None, expected: str
) -> None:
    assert job_status(state_type, name, NOW, NOW) == expected


def test_every_state_type_has_a_status() -> None:
    assert {job_status(t, t.value, None, NOW) for t in StateType} <= set(STATUSES)


def test_a_run_scheduled_for_later_is_delayed() -> None:
    later = NOW + timedelta(minutes=5)

    assert job_status(StateType.SCHEDULED, "Scheduled", later, NOW) == "delayed"


def test_a_failure_message_becomes_one_line_without_credentials() -> None:
    message = (
        "\n  Flow run encountered an exception: OperationalError: "
        "postgresql://app:hunter2@db.internal/prod refused\nTraceback (most recent call last):"
    )

    line = one_line_error(message)

    assert line == (
        "Flow run encountered an exception: OperationalError: "
        "postgresql://app:***@db.internal/prod refused"
    )
    assert one_line_error(None) is None
    assert one_line_error("x" * 10_000) == "x" * 500


def test_only_a_started_or_resumed_import_is_looked_up_in_the_ledger() -> None:
    assert not may_have_ledger("job-1", "job-1", started=False)
    assert may_have_ledger("job-1", "job-1", started=True)
    assert may_have_ledger("nightly-users", "job-1", started=False)
