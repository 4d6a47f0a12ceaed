"""Benchmark api-pull against a rate-limited local API: how close to the ideal time, how exact.

A json-server look-alike on loopback, in its own process, holds 5,000 records and answers 429
beyond 20 requests in any one-second window. `api-pull` reads them in pages of 100 with
`rate_limit_per_second=20`: 50 requests, so the ideal is 50 / 20 = 2.5 s. Printed: the
elapsed time and its ratio to the ideal (target within 15 %), the achieved requests per
second, the 429s the server sent and the most requests it saw in any one-second window
(must stay <= 20 + burst).

The Prefect API is started before anything is timed (the one at $PREFECT_API_URL if set,
else a throwaway local one), and one small warm-up pull pays the process's one-off costs.
The timed pull runs with Prefect's flow heartbeat off: Prefect 3.9.1 joins its heartbeat
thread, which sleeps in one-second steps, for up to 1 s at the end of every flow run, a cost
of the engine and not of pulling; a pull with the default heartbeat is timed and printed too.

    .venv/bin/python -m bench.bench_api [--database URL] [--records N] [--rate R]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from flows.api_pull import PullResult, api_pull
from samples.api_server import create_items_table, items, serve_elsewhere
from tasks.db.engine import get_engine

PAGE_SIZE = 100
MAX_CONCURRENCY = 5
TARGET_RATIO = 1.15


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    """The Prefect API to run against, started and ready before any timing."""
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    # A throwaway API with its own temporary database, the same one the flow tests use.
    with prefect_test_harness(server_startup_timeout=60):
        yield


def run(database: str, records: int, rate: int) -> dict[str, float]:
    """Pull `records` records at `rate` requests/s; the measured figures."""
    create_items_table(database)
    create_items_table(database, "warmup")
    collections = {"items": items(records), "warmup": items(PAGE_SIZE)}
    with serve_elsewhere(collections, limit_per_second=rate) as api:
        options: dict[str, Any] = {
            "base_url": api.url,
            "key": ["id"],
            "page_size": PAGE_SIZE,
            "rate_limit_per_second": rate,
            "max_concurrency": MAX_CONCURRENCY,
            "database": database,
        }
        api_pull(path="/warmup", table="warmup", **options)
        api.ask("clear")
        with_heartbeat, _ = _timed(options)
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            elapsed, result = _timed(options)
        rate_limited = api.ask("rate_limited")
        most = api.ask("max_in_any_second")
    with get_engine(database).connect() as conn:
        stored = conn.exec_driver_sql("SELECT count(DISTINCT id) FROM items").scalar_one()
    requests = -(-records // PAGE_SIZE)
    ideal = requests / rate
    return {
        "with_heartbeat": with_heartbeat,
        "elapsed": elapsed,
        "records": result.records,
        "stored": stored,
        "requests": result.requests,
        "ideal": ideal,
        "ratio": elapsed / ideal,
        "achieved_rps": result.requests / elapsed,
        "request_span_rps": result.requests_per_second,
        "server_429s": rate_limited,
        "max_in_any_second": most,
    }


def _timed(options: dict[str, Any]) -> tuple[float, PullResult]:
    """How long one pull of the records takes from a quiet server, and its result."""
    time.sleep(1.0)  # let earlier requests leave the server's window
    started = time.perf_counter()
    result = api_pull(path="/items", table="items", **options)
    return time.perf_counter() - started, result


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="SQLAlchemy URL (default: a temporary SQLite file)")
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=20)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, prefect_api():
        database = arguments.database or f"sqlite:///{Path(folder) / 'bench.db'}"
        figures = run(database, arguments.records, arguments.rate)
    limit = arguments.rate + MAX_CONCURRENCY
    print(
        f"api-pull: {figures['records']:.0f} records ({figures['stored']:.0f} stored) in "
        f"{figures['requests']:.0f} requests of {PAGE_SIZE}, limit {arguments.rate}/s"
    )
    print(
        f"elapsed {figures['elapsed']:.2f} s vs ideal {figures['ideal']:.2f} s: ratio "
        f"{figures['ratio']:.3f} (target <= {TARGET_RATIO})"
    )
    print(
        f"with Prefect's default flow heartbeat: {figures['with_heartbeat']:.2f} s (3.9.1 joins "
        "its heartbeat thread for up to 1 s when a flow run ends)"
    )
    print(
        f"achieved {figures['achieved_rps']:.1f} requests/s over the flow run, "
        f"{figures['request_span_rps']:.1f}/s from first request to last answer"
    )
    print(
        f"server: max {figures['max_in_any_second']:.0f} requests in any one-second window "
        f"(must be <= {limit}), {figures['server_429s']:.0f} answered 429"
    )


if __name__ == "__main__":
    main()
