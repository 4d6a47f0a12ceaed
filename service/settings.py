"""Service settings from environment variables, each with a safe default (docs/service.md)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from deployments.processes import ROOT

STATE_ENV = "BATCHFLOWS_SERVICE_STATE"
SECRET_FILE = "secret"  # noqa: S105  (a file name, not a secret)


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, once at start."""

    state: Path
    secret: bytes
    max_upload_bytes: int
    rate_limit_per_minute: int
    port: int
    host: str
    database: str | None
    link_ttl_seconds: int
    max_json_bytes: int

    @property
    def uploads(self) -> Path:
        """Where uploaded files live; the worker reads them from here."""
        return self.state / "uploads"


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"${name}: {raw!r} is not a whole number") from None
    if value < minimum:
        raise SystemExit(f"${name}: {value} must be at least {minimum}")
    return value


def _secret(state: Path) -> bytes:
    """$BATCHFLOWS_SERVICE_SECRET, else a random one generated once and kept in the state folder."""
    given = os.environ.get("BATCHFLOWS_SERVICE_SECRET", "")
    if given:
        return given.encode()
    path = state / SECRET_FILE
    if not path.exists():
        state.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting together keep the first one's secret.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def load_settings() -> Settings:
    """Read the environment (and the state folder's secret)."""
    state = Path(os.environ.get(STATE_ENV) or ROOT / ".prefect" / "service").resolve()
    state.mkdir(parents=True, exist_ok=True)
    return Settings(
        state=state,
        secret=_secret(state),
        max_upload_bytes=_int("BATCHFLOWS_SERVICE_MAX_UPLOAD_MB", 1024) * 1024 * 1024,
        rate_limit_per_minute=_int("BATCHFLOWS_SERVICE_RATE_LIMIT", 600),
        port=_int("BATCHFLOWS_SERVICE_PORT", 8000, minimum=0),
        host=os.environ.get("BATCHFLOWS_SERVICE_HOST", "127.0.0.1"),
        database=os.environ.get("BATCHFLOWS_DATABASE_URL") or None,
        link_ttl_seconds=_int("BATCHFLOWS_SERVICE_LINK_TTL_SECONDS", 3600),
        max_json_bytes=10 * 1024 * 1024,
    )
