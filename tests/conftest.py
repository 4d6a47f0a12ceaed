"""Databases for tests: the real PostgreSQL (a fresh schema per test) and a SQLite file.

Every test also gets its own exports root and default database under its tmp dir, so no
test reads, writes or deletes files of the checkout (data/).

PostgreSQL tests never skip silently: if the server cannot be reached they fail, unless
BATCHFLOWS_SKIP_POSTGRES=1 says on purpose that this machine has none (never set in CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from tasks.db.engine import dispose_engines

ADMIN_URL = os.environ.get(
    "BATCHFLOWS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(autouse=True)
def isolated_paths(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """$BATCHFLOWS_EXPORTS_ROOT and the default SQLite database, in a directory of this test."""
    root = tmp_path_factory.mktemp("isolated")
    monkeypatch.setenv("BATCHFLOWS_EXPORTS_ROOT", str(root / "exports"))
    monkeypatch.setenv("BATCHFLOWS_DATABASE_URL", f"sqlite:///{root / 'batchflows.db'}")
    return root


def _admin_connect() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("BATCHFLOWS_SKIP_POSTGRES") == "1" and os.environ.get("CI") != "true":
            pytest.skip(f"PostgreSQL unreachable and BATCHFLOWS_SKIP_POSTGRES=1: {exc}")
        pytest.fail(f"PostgreSQL tests need the server at {ADMIN_URL}: {exc}")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A throwaway database for this test session; its URL (psycopg driver)."""
    name = f"batchflows_test_{uuid.uuid4().hex[:10]}"
    with _admin_connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = sa.make_url(ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    yield url.render_as_string(hide_password=False)
    dispose_engines()
    with _admin_connect() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """A fresh schema in the session database, first on the search path: a clean slate."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(postgres_database)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(postgres_database).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    dispose_engines()
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A new SQLite database file."""
    yield f"sqlite:///{tmp_path / 'test.db'}"
    dispose_engines()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on both backends."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url
