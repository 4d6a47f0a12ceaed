"""Deterministic `Idempotency-Key`s, and database values as the JSON that is sent.

A request's key is the SHA-256 (hex) of the canonical JSON of

    {"method": "POST", "url": "<target URL>", "key": [<key column values>], "payload": <body>}

where canonical means sorted object keys, no whitespace, UTF-8. The same record therefore
sends the same key in every retry, every rerun of the push and every replay of its dead
letter, so an API that honours `Idempotency-Key` applies it once; a record whose values
changed gets a new key, so the change is sent. A batch's key covers the key values and
payloads of all its records, in order.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def idempotency_key(method: str, url: str, key: list[Any], payload: Any) -> str:
    """The deterministic key of one request (see module docstring)."""
    document = {"method": method.upper(), "url": url, "key": key, "payload": payload}
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    """A database row as JSON values (timestamps ISO 8601, decimals as numbers, bytes base64)."""
    return {name: _json_value(value) for name, value in row.items()}


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return str(value)
