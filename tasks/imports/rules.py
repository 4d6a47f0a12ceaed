"""The import's per-column rules: a flow parameter type, checked by validation.py."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class ColumnRule(BaseModel):
    """Extra checks for one column, on top of its type, NOT NULL and length limit."""

    model_config = ConfigDict(extra="forbid")

    required: bool = False
    min: int | float | str | None = None
    max: int | float | str | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: list[str] | None = None
    format: Literal["email"] | None = None
