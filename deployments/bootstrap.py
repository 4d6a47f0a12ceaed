"""Create what the deployments in prefect.yaml rely on; safe to run any number of times.

`python -m deployments.bootstrap` (run by `make deploy`) talks to the server named by
PREFECT_API_URL: the process work pool `batchflows` with its priority queues, the global
concurrency limit `api-rate` the API flows take slots from, and, when BATCHFLOWS_DATABASE_URL
is set, the SqlAlchemyConnector block `warehouse` that flows accept as `database=warehouse`.
Per-deployment concurrency (at most two imports at once) is declared in prefect.yaml. The
automations (zombie runs marked Crashed, alerts) are described in deployments/automations.py.
"""

from __future__ import annotations

import os

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker
from prefect_sqlalchemy import SqlAlchemyConnector
from pydantic import BaseModel

from deployments.automations import Automations, ensure_automations
from tasks.db.engine import ENV_VAR

POOL = "batchflows"
# Lower runs first: the worker takes urgent imports before routine work, maintenance last.
QUEUES = {"high": 1, "default": 2, "low": 3}
API_RATE = "api-rate"
API_RATE_LIMIT = 20
API_RATE_DECAY = 20.0
WAREHOUSE_BLOCK = "warehouse"


class Bootstrapped(BaseModel):
    """What the server holds afterwards."""

    pool: str
    queues: dict[str, int]
    api_rate: int
    warehouse_block: bool
    automations: Automations


def ensure_pool(client: SyncPrefectClient, name: str = POOL) -> None:
    """A process work pool `name`; an existing one is left as configured."""
    try:
        client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type="process",
                base_job_template=ProcessWorker.get_default_base_job_template(),
                description="batchflows: flow runs as subprocesses of `make worker`",
            )
        )


def ensure_queues(
    client: SyncPrefectClient, priorities: dict[str, int] = QUEUES, pool: str = POOL
) -> dict[str, int]:
    """Queues with these priorities, set in priority order (the server shifts others on a
    clash, so setting them highest first ends in exactly these values)."""
    for name, priority in sorted(priorities.items(), key=lambda item: item[1]):
        try:
            queue = client.read_work_queue_by_name(name, work_pool_name=pool)
        except ObjectNotFound:
            client.create_work_queue(name=name, work_pool_name=pool, priority=priority)
        else:
            if queue.priority != priority:
                client.update_work_queue(queue.id, priority=priority)
    return {queue.name: queue.priority for queue in client.read_work_queues(work_pool_name=pool)}


def ensure_rate_limit(client: SyncPrefectClient) -> int:
    """The global limit `api-rate`: 20 slots, each freed 1/20 s after use (20 requests/s)."""
    client.upsert_global_concurrency_limit_by_name(
        API_RATE, API_RATE_LIMIT, slot_decay_per_second=API_RATE_DECAY
    )
    return client.read_global_concurrency_limit_by_name(API_RATE).limit


def ensure_warehouse(url: str | None) -> bool:
    """Save `url` as the SqlAlchemyConnector block `warehouse`; nothing when unset."""
    if not url:
        return False
    SqlAlchemyConnector(connection_info=url).save(WAREHOUSE_BLOCK, overwrite=True)
    return True


def bootstrap() -> Bootstrapped:
    """Everything above, against PREFECT_API_URL."""
    with get_client(sync_client=True) as client:
        ensure_pool(client)
        queues = ensure_queues(client)
        api_rate = ensure_rate_limit(client)
    return Bootstrapped(
        pool=POOL,
        queues=queues,
        api_rate=api_rate,
        warehouse_block=ensure_warehouse(os.environ.get(ENV_VAR)),
        automations=ensure_automations(POOL),
    )


if __name__ == "__main__":
    print(bootstrap().model_dump_json())
