"""The import's own parameter types: what a key conflict does, and extra rules per column.

Light on purpose (pydantic only), so the flow, the plan and the array code share them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

OnConflict = Literal["skip", "update", "error"]


class ColumnRule(BaseModel):
    """Extra checks for one column, on top of its type, NOT NULL and length limit."""

    model_config = ConfigDict(extra="forbid")

    required: bool = False
    min: int | float | str | None = None
    max: int | float | str | None = None
    min_length: Annotated[int, Field(ge=0)] | None = None
    max_length: Annotated[int, Field(ge=0)] | None = None
    pattern: Annotated[str, Field(min_length=1)] | None = None
    choices: Annotated[list[str], Field(min_length=1)] | None = None
    format: Literal["email"] | None = None
