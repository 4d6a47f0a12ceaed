"""Uploads: CSV bodies streamed to disk (never held in memory), each owned by one key owner.

An import names one as `"source": "upload:<uploadId>"`; only its owner (or an admin) gets it
resolved to the file's path on the worker. Inline `data` records become an upload the same way.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from service.errors import ServiceError, bad_request
from service.tables import uploads

PREFIX = "upload:"
_FLUSH_BYTES = 1 << 20


def too_large(limit: int) -> ServiceError:
    return ServiceError(413, "payload_too_large", f"the body exceeds the limit of {limit} bytes")


class _Sink:
    """A new file under `directory`, hashed and counted as it is written."""

    def __init__(self, directory: Path, limit: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.upload_id = secrets.token_hex(16)
        self.path = directory / f"{self.upload_id}.csv"
        self.limit = limit
        self.bytes = 0
        self.digest = hashlib.sha256()
        self._handle = self.path.open("xb")
        os.chmod(self.path, 0o600)

    def write(self, data: bytes) -> None:
        self.bytes += len(data)
        if self.bytes > self.limit:
            raise too_large(self.limit)
        self.digest.update(data)
        self._handle.write(data)

    def close(self, keep: bool) -> None:
        self._handle.close()
        if not keep:
            self.path.unlink(missing_ok=True)


async def receive(chunks: AsyncIterator[bytes], directory: Path, limit: int) -> _Sink:
    """Stream `chunks` into a new upload file; 413 (and nothing kept) past `limit` bytes."""
    sink = _Sink(directory, limit)
    pending: list[bytes] = []
    size = 0
    try:
        async for chunk in chunks:
            pending.append(chunk)
            size += len(chunk)
            if size >= _FLUSH_BYTES:
                await run_in_threadpool(_write_all, sink, pending)
                pending, size = [], 0
        await run_in_threadpool(_write_all, sink, pending)
    except BaseException:
        sink.close(keep=False)
        raise
    sink.close(keep=True)
    return sink


def _write_all(sink: _Sink, pieces: Iterable[bytes]) -> None:
    for piece in pieces:
        sink.write(piece)


def _cell(value: Any) -> str:
    """One CSV field: None as an empty unquoted field (NULL), anything else quoted."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float, str)):
        text = str(value)
    else:
        raise ValueError("values must be strings, numbers, booleans or null")
    return '"' + text.replace('"', '""') + '"'


def records_to_csv(records: Sequence[Mapping[str, Any]]) -> Iterable[bytes]:
    """CSV lines (header first) for JSON records; columns in order of first appearance."""
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    yield (",".join(_cell(c) for c in columns) + "\r\n").encode()
    for record in records:
        yield (",".join(_cell(record.get(c)) for c in columns) + "\r\n").encode()


def check_records(data: Any) -> list[Mapping[str, Any]]:
    """Inline `data`: a non-empty list of flat JSON objects; 400 naming the first bad record."""
    if not isinstance(data, list) or not data:
        raise bad_request("data: give a non-empty list of records", {"data": "expected a list"})
    for index, record in enumerate(data):
        if not isinstance(record, dict) or not record:
            raise bad_request(
                f"data[{index}]: each record is a JSON object",
                {f"data[{index}]": "expected an object"},
            )
        for column, value in record.items():
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise bad_request(
                    f"data[{index}].{column}: values are strings, numbers, booleans or null",
                    {f"data[{index}].{column}": "nested values are not supported"},
                )
    return data


def write_records(records: Sequence[Mapping[str, Any]], directory: Path) -> _Sink:
    """Inline records as a new upload file."""
    sink = _Sink(directory, limit=1 << 62)
    try:
        for line in records_to_csv(records):
            sink.write(line)
    except BaseException:
        sink.close(keep=False)
        raise
    sink.close(keep=True)
    return sink


def record_upload(engine: Engine, owner: str, sink: _Sink) -> dict[str, Any]:
    """Remember who owns the upload; the 201 body."""
    with engine.begin() as conn:
        conn.execute(
            uploads.insert().values(
                upload_id=sink.upload_id,
                owner=owner,
                path=str(sink.path),
                bytes=sink.bytes,
                sha256=sink.digest.hexdigest(),
            )
        )
    return {"uploadId": sink.upload_id, "bytes": sink.bytes, "sha256": sink.digest.hexdigest()}


def resolve_upload(engine: Engine, source: str, owner: str | None) -> str | None:
    """The file path of `upload:<id>` if it exists and `owner` owns it (None: any owner)."""
    upload_id = source.removeprefix(PREFIX)
    query = sa.select(uploads.c.path).where(uploads.c.upload_id == upload_id)
    if owner is not None:
        query = query.where(uploads.c.owner == owner)
    with engine.connect() as conn:
        path = conn.execute(query).scalar_one_or_none()
    return path if path and Path(path).exists() else None


def remove_uploads_before(engine: Engine, cutoff: Any, keep: Collection[str] = ()) -> int:
    """Delete uploads (files and records) received before `cutoff`, except those whose path
    is in `keep`; how many."""
    with engine.begin() as conn:
        received = conn.execute(
            sa.select(uploads.c.upload_id, uploads.c.path).where(uploads.c.created_at < cutoff)
        ).all()
        old = [row for row in received if row.path not in keep]
        for row in old:
            Path(row.path).unlink(missing_ok=True)
        if old:
            conn.execute(
                uploads.delete().where(uploads.c.upload_id.in_([r.upload_id for r in old]))
            )
    return len(old)
