"""The import-csv flow with its chunk tasks fanned out to a Dask cluster.

Same parameters and guarantees as flows/import_csv.py: chunks still apply in order because
the order is kept in the database (advisory locks and the chunk ledger), not in the flow's
process. Set BATCHFLOWS_DASK_ADDRESS on the worker to use a running scheduler
(tcp://host:8786) whose workers see the same files and database; without it each flow run
starts a local cluster of two worker processes. Keep max_concurrency at or
below the cluster's worker threads, so every chunk in flight has a thread.
"""

from __future__ import annotations

import os
from typing import Any, cast

from prefect import Flow
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner
from prefect_dask.task_runners import DaskTaskRunner

from flows.import_csv import ImportResult, import_csv


def with_dask(address: str | None = None) -> Flow[..., ImportResult]:
    """import-csv with its chunks on the Dask scheduler at `address` (tcp://host:8786), or
    without one on a local cluster of two worker processes started for each flow run."""
    # prefect-dask refuses cluster settings beside an address (the scheduler has its own).
    runner = (
        DaskTaskRunner(address=address)
        if address
        else DaskTaskRunner(
            cluster_kwargs={"n_workers": 2, "threads_per_worker": 2, "processes": True}
        )
    )
    # with_options is typed for the base runner's futures; Dask's futures are a subtype of them.
    return import_csv.with_options(task_runner=cast("TaskRunner[PrefectFuture[Any]]", runner))


import_csv_dask = with_dask(os.environ.get("BATCHFLOWS_DASK_ADDRESS") or None)
