"""Prefect flow-run filters for the service's statuses and owners."""

from __future__ import annotations

from datetime import datetime

from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType

_TYPES: dict[str, list[StateType]] = {
    "queued": [StateType.SCHEDULED],
    "delayed": [StateType.SCHEDULED],
    "active": [StateType.PENDING, StateType.RUNNING],
    "completed": [StateType.COMPLETED],
    "failed": [StateType.FAILED, StateType.CRASHED],
    "cancelling": [StateType.CANCELLING],
    "cancelled": [StateType.CANCELLED],
    "paused": [StateType.PAUSED],
}


def status_filter(status: str, now: datetime, tags: list[str] | None = None) -> FlowRunFilter:
    """Runs in `status` (one of status.STATUSES) now, carrying every tag in `tags`."""
    expected = None
    if status == "queued":
        expected = FlowRunFilterExpectedStartTime(before_=now)
    elif status == "delayed":
        expected = FlowRunFilterExpectedStartTime(after_=now)
    return FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_TYPES[status])),
        expected_start_time=expected,
        tags=FlowRunFilterTags(all_=tags) if tags else None,
    )


def tags_filter(tags: list[str]) -> FlowRunFilter:
    return FlowRunFilter(tags=FlowRunFilterTags(all_=tags))
