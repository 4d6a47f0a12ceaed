"""The import-csv job: plan the file against the table, apply chunks exactly once, sum up.

Flows import from here; modules inside `tasks/` import the module itself
(`tasks.imports.ledger`), so this file never takes part in an import cycle.
"""

from tasks.imports.alerts import emit_error_rate_alert
from tasks.imports.csv_plan import CsvDialect
from tasks.imports.ledger import ChunkCounts, ImportTotals, first_rejects
from tasks.imports.plan import ImportOptions, ImportPlan
from tasks.imports.rules import ColumnRule, OnConflict
from tasks.imports.sizing import ChunkCutter
from tasks.imports.steps import (
    chunk_cutter,
    failure_recorded,
    finish_import,
    plan_import,
    run_in_order,
)

__all__ = [
    "ChunkCounts",
    "ChunkCutter",
    "ColumnRule",
    "CsvDialect",
    "ImportOptions",
    "ImportPlan",
    "ImportTotals",
    "OnConflict",
    "chunk_cutter",
    "emit_error_rate_alert",
    "failure_recorded",
    "finish_import",
    "first_rejects",
    "plan_import",
    "run_in_order",
]
