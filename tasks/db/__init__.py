"""The target database: engine, schema reflection, error translation, bookkeeping tables.

Flows import from here; modules inside `tasks/` import the module itself (`tasks.db.engine`),
so this file never takes part in an import cycle.
"""

from tasks.db.engine import get_engine

__all__ = ["get_engine"]
