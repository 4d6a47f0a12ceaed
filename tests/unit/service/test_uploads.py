"""Uploads: streamed to disk with a size limit; inline records as CSV the import reads back."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.errors import ServiceError
from service.tables import service_engine
from service.uploads import (
    check_records,
    receive,
    record_upload,
    records_to_csv,
    remove_uploads_before,
    resolve_upload,
    write_records,
)


async def _chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def test_a_streamed_body_lands_on_disk_with_its_size_and_hash(tmp_path: Path) -> None:
    pieces = [b"a,b\n", b"1,2\n" * 300_000]

    sink = asyncio.run(receive(_chunks(*pieces), tmp_path, limit=10_000_000))

    whole = b"".join(pieces)
    assert sink.path.read_bytes() == whole
    assert (sink.bytes, sink.digest.hexdigest()) == (len(whole), hashlib.sha256(whole).hexdigest())


def test_a_body_over_the_limit_is_413_and_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ServiceError) as refused:
        asyncio.run(receive(_chunks(b"x" * 600, b"x" * 600), tmp_path, limit=1000))

    assert refused.value.status == 413
    assert list(tmp_path.iterdir()) == []


def test_records_become_csv_with_nulls_apart_from_empty_strings() -> None:
    records: list[dict[str, object]] = [
        {"email": "a@x", "name": 'Zoë "Z", Müller\nline two', "age": 31},
        {"email": "b@x", "name": None, "active": True},
        {"email": "c@x", "name": ""},
    ]

    text = b"".join(records_to_csv(records)).decode()

    assert text.splitlines()[0] == '"email","name","age","active"'
    assert '"b@x",,,"true"' in text
    assert '"c@x","",,' in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == ["a@x", 'Zoë "Z", Müller\nline two', "31", ""]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], "data"),
        ({"a": 1}, "data"),
        ([{"a": 1}, "x"], "data[1]"),
        ([{}], "data[0]"),
        ([{"a": {"nested": 1}}], "data[0].a"),
        ([{"a": [1, 2]}], "data[0].a"),
    ],
)
def test_bad_inline_data_is_400_naming_the_record(data: object, field: str) -> None:
    with pytest.raises(ServiceError) as refused:
        check_records(data)

    assert refused.value.status == 400
    assert field in (refused.value.fields or {})


def test_an_upload_resolves_only_for_its_owner(sqlite_url: str, tmp_path: Path) -> None:
    engine = service_engine(sqlite_url)
    sink = write_records([{"a": 1}], tmp_path)
    record_upload(engine, "alice", sink)
    source = f"upload:{sink.upload_id}"

    assert resolve_upload(engine, source, "alice") == str(sink.path)
    assert resolve_upload(engine, source, None) == str(sink.path)
    assert resolve_upload(engine, source, "bob") is None
    for hostile in ("upload:../../etc/passwd", "upload:' OR '1'='1", "upload:"):
        assert resolve_upload(engine, hostile, "alice") is None


def test_old_uploads_are_removed_with_their_files(sqlite_url: str, tmp_path: Path) -> None:
    engine = service_engine(sqlite_url)
    sink = write_records([{"a": 1}], tmp_path)
    record_upload(engine, "alice", sink)

    kept = remove_uploads_before(engine, datetime.now(UTC) - timedelta(hours=1))
    removed = remove_uploads_before(engine, datetime.now(UTC) + timedelta(seconds=5))

    assert (kept, removed) == (0, 1)
    assert not sink.path.exists()
