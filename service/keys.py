"""API keys: random, shown once, stored as a SHA-256 hash, each with an owner and scopes.

`python -m service.keys create --owner NAME [--types T1,T2] [--queues Q1,Q2] [--admin]`
prints the new key alone on stdout; `list` shows keys without secrets; `revoke KEY_ID` ends one.
A key reads `bf_<key id>_<secret>`: the id finds the row, the hash of the whole key proves it.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import re
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.settings import load_settings
from service.tables import api_keys, service_engine

DEFAULT_QUEUES = ("default", "low")
_KEY = re.compile(r"^bf_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class ApiKey:
    """Who a verified key belongs to and what it may do."""

    key_id: str
    owner: str
    types: frozenset[str] | None  # None: every job type
    queues: frozenset[str]
    admin: bool

    def may_submit(self, job_type: str) -> bool:
        return self.admin or self.types is None or job_type in self.types

    def may_use(self, queue: str) -> bool:
        return self.admin or queue in self.queues


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    engine: Engine,
    owner: str,
    types: list[str] | None = None,
    queues: list[str] | None = None,
    admin: bool = False,
) -> tuple[str, str]:
    """A new key for `owner`: (key id, the key itself, never stored)."""
    if not owner.strip():
        raise ValueError("--owner: give a non-empty owner name")
    key_id = secrets.token_hex(8)
    key = f"bf_{key_id}_{secrets.token_urlsafe(32)}"
    with engine.begin() as conn:
        conn.execute(
            api_keys.insert().values(
                key_id=key_id,
                key_hash=hash_key(key),
                owner=owner.strip(),
                types=sorted(types) if types else None,
                queues=sorted(queues or DEFAULT_QUEUES),
                admin=admin,
            )
        )
    return key_id, key


def verify_key(engine: Engine, key: str | None) -> ApiKey | None:
    """The key's owner and scopes, or None for a missing, malformed, unknown or revoked key."""
    match = _KEY.match(key or "")
    if not match or key is None:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(api_keys).where(api_keys.c.key_id == match.group(1))
        ).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(hash_key(key), row.key_hash):
        return None
    return ApiKey(
        key_id=row.key_id,
        owner=row.owner,
        types=frozenset(row.types) if row.types is not None else None,
        queues=frozenset(row.queues),
        admin=bool(row.admin),
    )


def list_keys(engine: Engine) -> list[dict[str, object]]:
    """Every key, without any secret."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).all()
    return [
        {
            "key_id": row.key_id,
            "owner": row.owner,
            "types": row.types or "*",
            "queues": row.queues,
            "admin": row.admin,
            "revoked": row.revoked_at is not None,
        }
        for row in rows
    ]


def revoke_key(engine: Engine, key_id: str) -> bool:
    """Revoke a key by id; False if there is no such active key."""
    with engine.begin() as conn:
        done = conn.execute(
            api_keys.update()
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    return bool(done.rowcount)


def _split(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key; prints it alone on stdout")
    create.add_argument("--owner", required=True)
    create.add_argument("--types", help="job types it may submit, comma separated; default all")
    create.add_argument("--queues", help="queues it may use; default default,low")
    create.add_argument("--admin", action="store_true", help="queue control, every owner's jobs")
    commands.add_parser("list", help="every key, without secrets")
    revoke = commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)
    engine = service_engine(load_settings().database)
    if args.command == "create":
        try:
            key_id, key = create_key(
                engine, args.owner, _split(args.types), _split(args.queues), args.admin
            )
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        print(f"key {key_id} for {args.owner}: keep it now, it is not shown again", file=sys.stderr)
        print(key)
    elif args.command == "list":
        for entry in list_keys(engine):
            print("  ".join(f"{name}={value}" for name, value in entry.items()))
    elif not revoke_key(engine, args.key_id):
        print(f"no active key {args.key_id}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
