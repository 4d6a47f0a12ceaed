"""Shared by every job: run progress in the Prefect UI, run logging, retry options, task window.

Flows import from here; modules inside `tasks/` import the module itself (`tasks.common.retry`),
so this file never takes part in an import cycle.
"""

from tasks.common.parameters import schema_bounds
from tasks.common.progress import RunProgress
from tasks.common.retry import transient_retries
from tasks.common.run_log import run_logger
from tasks.common.task_window import results_in_order

__all__ = ["RunProgress", "results_in_order", "run_logger", "schema_bounds", "transient_retries"]
