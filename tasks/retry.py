"""Which failures Prefect retries: only those a second attempt can fix.

Tasks use `retry_condition_fn=retry_if_transient`, with exponential backoff and jitter, so a
deadlock, a database restart or a dropped connection is retried, while bad input fails at once.
"""

from __future__ import annotations

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun

from tasks.errors import TargetError

BACKOFF_FACTOR = 2
JITTER = 0.5


def is_transient(error: BaseException) -> bool:
    """A database error that a retry may overcome."""
    return isinstance(error, TargetError) and error.transient


def retry_if_transient(task: Task[..., object], task_run: TaskRun, state: State[object]) -> bool:
    """Prefect `retry_condition_fn`: retry transient errors only."""
    del task, task_run
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and is_transient(error)
