"""The `batchflows_*` tables: what was imported, exported and sent, kept in the target database.

They live beside the data they describe so a chunk's rows and its ledger row commit in one
transaction. They are created on first use, under a lock on PostgreSQL so concurrent workers
do not race on the catalog.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine

from tasks.db.engine import backend_of

metadata = sa.MetaData()

_Json = sa.JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-numbers an INTEGER PRIMARY KEY, so ids are BIGINT on PostgreSQL alone.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Timestamp = sa.DateTime(timezone=True)
# The longest import_id: import-csv's parameter schema and the jobs service check against it.
IMPORT_ID_LENGTH = 64

imports = sa.Table(
    "batchflows_imports",
    metadata,
    sa.Column("import_id", sa.String(IMPORT_ID_LENGTH), primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("options", _Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("total_rows", sa.BigInteger, nullable=False),
    sa.Column("chunk_count", sa.Integer, nullable=False),
    sa.Column("inserted", sa.BigInteger),
    sa.Column("updated", sa.BigInteger),
    sa.Column("skipped", sa.BigInteger),
    sa.Column("failed", sa.BigInteger),
    sa.Column("error", sa.Text),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("started_at", _Timestamp, nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("finished_at", _Timestamp),
)

chunks = sa.Table(
    "batchflows_chunks",
    metadata,
    sa.Column("import_id", sa.String(IMPORT_ID_LENGTH), primary_key=True),
    sa.Column("chunk_index", sa.Integer, primary_key=True),
    sa.Column("start_byte", sa.BigInteger, nullable=False),
    sa.Column("end_byte", sa.BigInteger, nullable=False),
    sa.Column("first_line", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("inserted", sa.Integer, nullable=False),
    sa.Column("updated", sa.Integer, nullable=False),
    sa.Column("skipped", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    # Running totals through this chunk, so the next chunk checks the error rate in O(1).
    sa.Column("cum_rows", sa.BigInteger, nullable=False),
    sa.Column("cum_failed", sa.BigInteger, nullable=False),
    sa.Column(
        "committed_at", _Timestamp, nullable=False, server_default=sa.func.current_timestamp()
    ),
)

rejects = sa.Table(
    "batchflows_rejects",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("import_id", sa.String(IMPORT_ID_LENGTH), nullable=False),
    sa.Column("chunk_index", sa.Integer, nullable=False),
    sa.Column("line", sa.BigInteger, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("errors", _Json, nullable=False),
    sa.Column("created_at", _Timestamp, nullable=False, server_default=sa.func.current_timestamp()),
    sa.Index("batchflows_rejects_import_line", "import_id", "line"),
)

# Keys an update-mode import has already applied (128-bit hashes): chunks apply in reverse file
# order, and an earlier occurrence of a claimed key is superseded. Deleted when the import ends.
claims = sa.Table(
    "batchflows_claims",
    metadata,
    sa.Column("import_id", sa.String(IMPORT_ID_LENGTH), primary_key=True),
    sa.Column("key_hi", sa.BigInteger, primary_key=True),
    sa.Column("key_lo", sa.BigInteger, primary_key=True),
)

exports = sa.Table(
    "batchflows_exports",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("compression", sa.String(16), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("created_at", _Timestamp, nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("expires_at", _Timestamp, nullable=False),
    sa.Column("deleted_at", _Timestamp),
    sa.Index("batchflows_exports_expires", "expires_at"),
)

sync_state = sa.Table(
    "batchflows_sync_state",
    metadata,
    sa.Column("source", sa.String(512), primary_key=True),
    sa.Column("cursor", sa.Text),
    sa.Column("last_value", sa.Text),
    sa.Column("records", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("updated_at", _Timestamp, nullable=False, server_default=sa.func.current_timestamp()),
)

dead_letters = sa.Table(
    "batchflows_dead_letters",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.String(128), nullable=False),
    # The record's key values (a list of them for a batch), so a person can find a record.
    sa.Column("record_key", _Json, nullable=False),
    sa.Column("payload", _Json, nullable=False),
    # The plain (non-secret) headers of the original request, sent again on replay.
    sa.Column("headers", _Json, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("response_excerpt", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", _Timestamp, nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column(
        "last_attempt_at", _Timestamp, nullable=False, server_default=sa.func.current_timestamp()
    ),
    sa.Column("replayed_at", _Timestamp),
    sa.Index("batchflows_dead_letters_pending", "replayed_at", "created_at"),
    # One pending letter per request: a rerun that fails again updates it, never duplicates it.
    sa.Index(
        "batchflows_dead_letters_pending_key",
        "idempotency_key",
        unique=True,
        postgresql_where=sa.text("replayed_at IS NULL"),
        sqlite_where=sa.text("replayed_at IS NULL"),
    ),
)

# One row per (campaign, recipient): the send-emails ledger. `sending` is written before a
# message goes out and `sent` right after the server accepts it, so a resume knows which
# recipients are done, which are not, and which were in flight when a run died.
emails = sa.Table(
    "batchflows_emails",
    metadata,
    sa.Column("campaign_id", sa.String(128), primary_key=True),
    sa.Column("recipient", sa.String(320), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("smtp_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("message_id", sa.String(255), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("created_at", _Timestamp, nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("updated_at", _Timestamp, nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("sent_at", _Timestamp),
    sa.Index("batchflows_emails_status", "campaign_id", "status"),
)

_ready: set[str] = set()
_ready_lock = threading.Lock()


def ensure_bookkeeping(engine: Engine) -> None:
    """Create the bookkeeping tables that are missing; cheap after the first call per process."""
    key = engine.url.render_as_string(hide_password=False)
    with _ready_lock:
        if key in _ready:
            return
        with engine.begin() as conn:
            if backend_of(engine) == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('batchflows_ddl'))"))
            metadata.create_all(conn, checkfirst=True)
        _ready.add(key)
