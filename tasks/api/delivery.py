"""One request of a push or replay (`Delivery`) and how it ended (`Outcome`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Delivery(BaseModel):
    """One request to send: where, what, and under which idempotency key."""

    method: str
    url: str
    idempotency_key: str
    record_key: list[Any]
    payload: Any
    headers: dict[str, str]
    records: int = 1
    dead_letter_id: int | None = None


class Outcome(BaseModel):
    """How a delivery ended."""

    delivery: Delivery
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None
    excerpt: str | None = None
