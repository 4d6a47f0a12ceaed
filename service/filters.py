"""Prefect flow-run filters for the service's statuses and owners."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType

from service.pagination import Keyset

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


def listed_after(runs: FlowRunFilter, keyset: Keyset) -> FlowRunFilter:
    """`runs` narrowed to those a list newest first shows after `keyset`: expected to start at
    or before its time, less the ones of that time already listed."""
    expected = runs.expected_start_time or FlowRunFilterExpectedStartTime()
    before = keyset.before if expected.before_ is None else min(expected.before_, keyset.before)
    ids = runs.id or FlowRunFilterId()
    left_out = [*(ids.not_any_ or []), *map(UUID, keyset.seen)]
    return runs.model_copy(
        update={
            "expected_start_time": expected.model_copy(update={"before_": before}),
            "id": ids.model_copy(update={"not_any_": left_out}),
        }
    )
