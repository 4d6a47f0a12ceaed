"""The export-table job: check the source, write parts from one snapshot, publish one file.

Flows import from here; modules inside `tasks/` import the module itself
(`tasks.exports.files`), so this file never takes part in an import cycle.
"""

from tasks.exports.files import Published
from tasks.exports.part import ExportJob, PartResult
from tasks.exports.source import Compression, Format
from tasks.exports.steps import export_part, finish_export, plan_export, shared_snapshot

__all__ = [
    "Compression",
    "ExportJob",
    "Format",
    "PartResult",
    "Published",
    "export_part",
    "finish_export",
    "plan_export",
    "shared_snapshot",
]
