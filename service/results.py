"""A job's results, cursor-paginated: an import's rejected rows, a push's dead letters, an
export's file behind a signed download link."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, Row

from service.pagination import page
from service.signing import download_path
from tasks.db.bookkeeping import dead_letters, exports, rejects


def _missing_table(exc: sa.exc.DBAPIError) -> bool:
    return isinstance(exc, (sa.exc.ProgrammingError, sa.exc.OperationalError))


def import_rejects(engine: Engine, import_id: str, after: int | None, limit: int) -> dict[str, Any]:
    """Rejected rows of an import in line order; the cursor is the last row id seen."""
    query = (
        sa.select(rejects.c.id, rejects.c.line, rejects.c.raw, rejects.c.errors)
        .where(rejects.c.import_id == import_id, rejects.c.id > (after or 0))
        .order_by(rejects.c.id)
        .limit(limit + 1)
    )
    rows = _rows(engine, query)
    items = [{"line": r.line, "raw": r.raw, "errors": r.errors} for r in rows]
    return page(items, limit, rows[limit - 1].id if len(rows) > limit else None)


def push_dead_letters(
    engine: Engine, flow_run_id: str, after: int | None, limit: int
) -> dict[str, Any]:
    """Dead letters a push run left; the cursor is the last id seen."""
    query = (
        sa.select(dead_letters)
        .where(dead_letters.c.flow_run_id == flow_run_id, dead_letters.c.id > (after or 0))
        .order_by(dead_letters.c.id)
        .limit(limit + 1)
    )
    rows = _rows(engine, query)
    items = [
        {
            "id": r.id,
            "method": r.method,
            "url": r.url,
            "recordKey": r.record_key,
            "statusCode": r.status_code,
            "error": r.error,
            "attempts": r.attempts,
            "replayedAt": r.replayed_at.isoformat() if r.replayed_at else None,
        }
        for r in rows
    ]
    return page(items, limit, rows[limit - 1].id if len(rows) > limit else None)


def export_record(engine: Engine, flow_run_id: str) -> Row[Any] | None:
    """The file an export run published, if any."""
    query = sa.select(exports).where(exports.c.flow_run_id == flow_run_id).order_by(exports.c.id)
    rows = _rows(engine, query)
    return rows[-1] if rows else None


def export_item(record: Row[Any], secret: bytes, job_id: str, ttl: int) -> dict[str, Any]:
    """The export's file with a link valid for `ttl` seconds, or until the file expires."""
    file_expires = _aware(record.expires_at).timestamp()
    expires = int(min(time.time() + ttl, file_expires))
    return {
        "downloadUrl": download_path(secret, job_id, expires),
        "expiresAt": datetime.fromtimestamp(expires, UTC).isoformat(),
        "rows": record.rows,
        "bytes": record.bytes,
        "sha256": record.sha256,
        "format": record.format,
        "filename": Path(record.path).name,
    }


def downloadable(record: Row[Any] | None, now: datetime) -> Path | None:
    """The export's file if it still exists: not expired, not cleaned up, still on disk."""
    if record is None or record.deleted_at is not None or _aware(record.expires_at) <= now:
        return None
    path = Path(record.path)
    return path if path.is_file() else None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rows(engine: Engine, query: sa.Select[Any]) -> list[Row[Any]]:
    try:
        with engine.connect() as conn:
            return list(conn.execute(query).all())
    except sa.exc.DBAPIError as exc:
        if _missing_table(exc):
            return []  # the flows have not created their bookkeeping tables yet
        raise
