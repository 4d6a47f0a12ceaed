"""Reports are files under the exports root, published and recorded exactly like exports.

They go through the same path checks, the same atomic publish (sha256, never overwriting)
and the same `batchflows_exports` row with `expires_at`, so the cleanup flow deletes an
expired report as it deletes an expired export.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from pathlib import Path

from sqlalchemy.engine import Engine

from tasks.exports.files import (
    Published,
    TempFiles,
    check_filename,
    exports_root,
    publish,
    record_export,
    resolve_destination,
)


def report_filename(name: str, format: str, now: dt.datetime) -> str:
    """`report-<name>_<UTC timestamp>_<random>.<format>`: unique even within one second."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "report"
    return f"report-{stem}_{now.strftime('%Y%m%dT%H%M%SZ')}_{secrets.token_hex(3)}.{format}"


def publish_report(
    engine: Engine,
    data: bytes,
    *,
    destination: str,
    filename: str,
    format: str,
    source: str,
    rows: int,
    expires_at: dt.datetime,
    flow_run_id: str | None,
) -> Published:
    """Write `data` under `destination`/`filename` atomically and record it to expire."""
    directory = resolve_destination(destination, exports_root())
    files = TempFiles.new(directory, check_filename(filename))
    try:
        files.whole.write_bytes(data)
        published = publish(files.whole, files.final)
    finally:
        files.remove_all()
    try:
        record_export(
            engine,
            published=published,
            format=format,
            compression="none",
            source=source,
            rows=rows,
            expires_at=expires_at,
            flow_run_id=flow_run_id,
        )
    except BaseException:
        Path(published.path).unlink(missing_ok=True)
        raise
    return published
