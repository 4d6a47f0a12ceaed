"""The import keeps its guarantees when chunks run in Dask worker processes."""

from __future__ import annotations

from pathlib import Path

from flows.import_csv_dask import import_csv_dask
from samples.users import KEY, RULES
from tests.flows.helpers import expected_ids, make_users, table_ids


def test_chunks_in_dask_worker_processes_apply_in_order_exactly_once(
    tmp_path: Path, postgres_url: str
) -> None:
    users = make_users(tmp_path, postgres_url, 800)
    result = import_csv_dask(
        source=str(users.path),
        table="users",
        key=KEY,
        rules=RULES,
        chunk_size=50,
        max_concurrency=4,
        database=postgres_url,
    )
    assert result.total == 800
    assert result.chunks == 16
    assert result.total == result.inserted + result.updated + result.skipped + result.failed
    assert result.failed == users.generated.invalid
    assert table_ids(postgres_url) == expected_ids(users, "first")
    again = import_csv_dask(
        source=str(users.path),
        table="users",
        key=KEY,
        rules=RULES,
        chunk_size=50,
        on_conflict="update",
        max_concurrency=4,
        database=postgres_url,
    )
    assert table_ids(postgres_url) == expected_ids(users, "last")
    assert again.inserted == 0
