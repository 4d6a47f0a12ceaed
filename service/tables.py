"""The service's own tables, kept in the configured database beside the flows' bookkeeping."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine

from tasks.db.bookkeeping import IMPORT_ID_LENGTH
from tasks.db.engine import backend_of, get_engine

metadata = sa.MetaData()
_Json = sa.JSON().with_variant(JSONB(), "postgresql")
_Timestamp = sa.DateTime(timezone=True)

api_keys = sa.Table(
    "batchflows_api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    # SHA-256 of the whole key: keys are 256-bit random, so a plain hash cannot be reversed.
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("types", _Json),  # null: every job type
    sa.Column("queues", _Json, nullable=False),
    sa.Column("admin", sa.Boolean, nullable=False),
    sa.Column("created_at", _Timestamp, nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("revoked_at", _Timestamp),
)

jobs = sa.Table(
    "batchflows_jobs",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),  # the flow run id
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("queue", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(300)),
    # The database the job works on (null: the configured one), for progress and results.
    sa.Column("database", sa.Text),
    sa.Column("import_id", sa.String(IMPORT_ID_LENGTH)),
    sa.Column("created_at", _Timestamp, nullable=False, server_default=sa.func.current_timestamp()),
    sa.Index("batchflows_jobs_owner_created", "owner", "created_at"),
)

uploads = sa.Table(
    "batchflows_uploads",
    metadata,
    sa.Column("upload_id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", _Timestamp, nullable=False, server_default=sa.func.current_timestamp()),
)

_ready: set[str] = set()
_lock = threading.Lock()


def service_engine(database: str | None) -> Engine:
    """The engine of the configured database, with the service's tables created once."""
    engine = get_engine(database)
    key = engine.url.render_as_string(hide_password=False)
    with _lock:
        if key not in _ready:
            with engine.begin() as conn:
                if backend_of(engine) == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(hashtext('batchflows_ddl'))")
                    )
                metadata.create_all(conn, checkfirst=True)
            _ready.add(key)
    return engine
