"""Bounds of flow parameters that the form shows and the server checks, but a call does not.

`Annotated[int, Field(gt=0)]` is the rule: pydantic refuses a bad value in the Prefect UI
form, in `prefect deployment run` and in a direct call alike. `schema_bounds` is for a
parameter whose job already checks it with an `InputError` that names the parameter and says
what it allows: the bound still reaches the parameter schema (the form and the server refuse
the value before a run exists), while a direct call gets the job's own message.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field


def schema_bounds(**json_schema: float) -> Any:
    """A `Field` adding JSON-schema keywords (`minimum=0`, `maxLength=1`, ...) only."""
    return Field(json_schema_extra=dict(json_schema))
