"""Idempotency keys are deterministic, and database values become plain JSON."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from decimal import Decimal

from tasks.api.idempotency import canonical_json, idempotency_key, jsonable

URL = "https://api.test/users"


def test_the_same_record_always_gets_the_same_key() -> None:
    first = idempotency_key("POST", URL, [7], {"id": 7, "name": "Ann", "tags": ["a"]})
    again = idempotency_key("post", URL, [7], {"tags": ["a"], "name": "Ann", "id": 7})

    assert first == again


def test_the_key_is_the_documented_sha256_of_canonical_json() -> None:
    document = {"key": [7], "method": "POST", "payload": {"id": 7}, "url": URL}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))

    assert idempotency_key("POST", URL, [7], {"id": 7}) == hashlib.sha256(text.encode()).hexdigest()


def test_any_change_of_target_or_content_changes_the_key() -> None:
    base = idempotency_key("POST", URL, [7], {"id": 7, "name": "Ann"})

    assert (
        len(
            {
                base,
                idempotency_key("PUT", URL, [7], {"id": 7, "name": "Ann"}),
                idempotency_key("POST", URL + "/7", [7], {"id": 7, "name": "Ann"}),
                idempotency_key("POST", URL, [8], {"id": 7, "name": "Ann"}),
                idempotency_key("POST", URL, [7], {"id": 7, "name": "Bob"}),
            }
        )
        == 5
    )


def test_canonical_json_ignores_key_order_and_keeps_unicode() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_database_values_become_plain_json() -> None:
    row = {
        "at": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
        "day": dt.date(2024, 5, 1),
        "whole": Decimal("12.00"),
        "part": Decimal("0.25"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "blob": b"\x00\x01",
        "doc": {"n": Decimal("1")},
        "flag": True,
        "none": None,
    }

    assert jsonable(row) == {
        "at": "2024-05-01T12:30:00+00:00",
        "day": "2024-05-01",
        "whole": 12,
        "part": 0.25,
        "id": "12345678-1234-5678-1234-567812345678",
        "blob": "AAE=",
        "doc": {"n": 1},
        "flag": True,
        "none": None,
    }
