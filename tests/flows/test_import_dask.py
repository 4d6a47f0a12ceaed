"""The import keeps its guarantees when chunks run in Dask worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import LocalCluster

import flows.import_csv
from flows.import_csv_dask import import_csv_dask, with_dask
from samples.users import KEY, RULES
from tasks.imports.writer import ChunkCounts
from tests.flows.helpers import expected_ids, make_users, table_ids


@pytest.fixture
def chunk_pids(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The process each chunk ran in, as the flow (in this process) saw its counts."""
    seen: list[int] = []
    report = flows.import_csv._report

    def spy(progress: Any, plan: Any, cutter: Any, counts: ChunkCounts) -> None:
        seen.append(counts.pid)
        report(progress, plan, cutter, counts)

    monkeypatch.setattr(flows.import_csv, "_report", spy)
    return seen


@pytest.fixture
def scheduler() -> Iterator[str]:
    """A Dask scheduler the flow does not start: its address (two worker processes)."""
    with LocalCluster(  # type: ignore[no-untyped-call]  # distributed ships no hints here
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
    ) as cluster:
        yield str(cluster.scheduler_address)


def test_chunks_in_dask_worker_processes_apply_in_order_exactly_once(
    tmp_path: Path, postgres_url: str, chunk_pids: list[int]
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
    # The local cluster's two worker processes ran the chunks, not the flow's process.
    assert len(chunk_pids) == 16
    assert os.getpid() not in chunk_pids
    assert len(set(chunk_pids)) == 2
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


def test_chunks_run_on_an_external_dask_scheduler_given_its_address(
    tmp_path: Path, postgres_url: str, scheduler: str, chunk_pids: list[int]
) -> None:
    users = make_users(tmp_path, postgres_url, 800)
    result = with_dask(scheduler)(
        source=str(users.path),
        table="users",
        key=KEY,
        rules=RULES,
        chunk_size=50,
        max_concurrency=4,
        database=postgres_url,
    )
    assert (result.total, result.chunks) == (800, 16)
    assert result.failed == users.generated.invalid
    assert table_ids(postgres_url) == expected_ids(users, "first")
    assert os.getpid() not in chunk_pids
    assert len(set(chunk_pids)) == 2
