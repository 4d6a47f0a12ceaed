"""The logger to use: the Prefect run's own (shown in the UI) inside a run, a plain one outside."""

from __future__ import annotations

import logging
from typing import Any

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

_fallback = logging.getLogger("batchflows")


def run_logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The current flow or task run's logger, or the `batchflows` logger outside any run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return _fallback
