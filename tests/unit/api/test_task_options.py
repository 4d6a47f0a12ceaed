"""Every API task is declared one way: no Prefect cache, retries of transient errors only."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.cache_policies import NO_CACHE

from tasks.api.dead_letters import plan_replay
from tasks.api.pull_pages import fetch_page
from tasks.api.pull_plan import plan_pull
from tasks.api.push_source import plan_push
from tasks.api.send import send_group
from tasks.common.retry import retry_if_transient

TASKS = [plan_pull, fetch_page, plan_push, send_group, plan_replay]


@pytest.mark.parametrize("task", TASKS, ids=lambda task: task.name)
def test_api_tasks_keep_no_cache_and_retry_only_transient_errors(task: Any) -> None:
    assert task.cache_policy is NO_CACHE
    assert task.retry_condition_fn is retry_if_transient
