"""Benchmark api-pull against a rate-limited, flaky local API, as a user times the call.

A json-server look-alike on loopback, in its own process, holds 5,000 records, answers 429
beyond 20 requests in any one-second window and 503 to every 20th request (5 %). `api-pull`
reads them in pages of 100 with `rate_limit_per_second=20`: 50 pages plus the retried 503s,
so the ideal is requests / 20 (about 2.65 s). The target is the whole `api_pull(...)` call,
as a user times it, within 1.25x of the ideal.

Each variant is one call against the same server and records (each into its own table), so
their differences are the flow's own overhead, reported separately:
- `as called`: the flow as a user calls it, Prefect's defaults;
- `persist_result=False`: the same without result persistence (`with_options`);
- `heartbeat off`: PREFECT_FLOWS_HEARTBEAT_FREQUENCY unset; Prefect 3.9.1 joins its heartbeat
  thread, which sleeps in one-second steps, for up to 1 s when a flow run ends;
- `heartbeat off, no artifacts`: also without the progress and summary artifacts;
and `pull alone`, the pull's own span from its first request to its last answer (from the
result's requests per second). `set-up and tear-down` is `heartbeat off, no artifacts` minus
its own pull span: flow-run creation, the plan, the final state, what is left.

The Prefect API is started before anything is timed (the one at $PREFECT_API_URL if set,
else a throwaway local one), and one small warm-up pull pays the process's one-off costs.
Writes bench/out/api.json.

    .venv/bin/python -m bench.bench_api [--database URL] [--records N] [--rate R]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from bench.support import OUT
from flows.api_pull import PullResult, api_pull
from samples.api_server import create_items_table, items, serve_elsewhere
from tasks.common import progress as progress_module

PAGE_SIZE = 100
MAX_CONCURRENCY = 5
FAIL_EVERY = 20
TARGET_RATIO = 1.25


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    """The Prefect API to run against, started and ready before any timing."""
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    # A throwaway API with its own temporary database, the same one the flow tests use.
    with prefect_test_harness(server_startup_timeout=240):
        yield


Variant = tuple[str, Callable[[], AbstractContextManager[Any]], bool]


def _no_artifacts() -> AbstractContextManager[Any]:
    """Progress artifacts believe they run outside a flow run, so they do nothing."""
    stack = contextlib.ExitStack()
    stack.enter_context(_heartbeat_off())
    stack.enter_context(_patched(progress_module, "FlowRunContext", _NoRunContext))
    return stack


class _NoRunContext:
    @staticmethod
    def get() -> None:
        return None


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def _heartbeat_off() -> AbstractContextManager[Any]:
    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


VARIANTS: list[Variant] = [
    ("as called", contextlib.nullcontext, False),
    ("persist_result=False", contextlib.nullcontext, True),
    ("heartbeat off", _heartbeat_off, False),
    ("heartbeat off, no artifacts", _no_artifacts, False),
]


def run(database: str, records: int, rate: int, rounds: int) -> dict[str, Any]:
    """Pull `records` records at `rate` requests/s in every variant; the measured figures."""
    create_items_table(database, "warmup")
    collections = {"items": items(records), "warmup": items(PAGE_SIZE)}
    seconds: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    spans: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    phases: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in VARIANTS}
    results: dict[str, PullResult] = {}
    with serve_elsewhere(collections, limit_per_second=rate, fail_every=FAIL_EVERY) as api:
        options: dict[str, Any] = {
            "base_url": api.url,
            "path": "/items",
            "key": ["id"],
            "page_size": PAGE_SIZE,
            "rate_limit_per_second": rate,
            "max_concurrency": MAX_CONCURRENCY,
            "database": database,
        }
        api_pull(**{**options, "path": "/warmup", "table": "warmup"})
        api.ask("clear")
        for round_ in range(rounds):
            for number, (name, context, no_persist) in enumerate(VARIANTS):
                table = f"items_{round_}_{number}"
                create_items_table(database, table)
                pull = api_pull.with_options(persist_result=False) if no_persist else api_pull
                time.sleep(1.0)  # let earlier requests leave the server's window
                with context():
                    called = time.time()
                    started = time.perf_counter()
                    state = pull(**options, table=table, return_state=True)
                    seconds[name].append(time.perf_counter() - started)
                    returned = time.time()
                result = results[name] = state.result()
                span = result.requests / result.requests_per_second
                spans[name].append(span)
                phases[name].append(_phases(state, called, returned, span))
        rate_limited = api.ask("rate_limited")
        most = api.ask("max_in_any_second")
    best = {name: min(times) for name, times in seconds.items()}
    best["pull alone"] = min(spans["heartbeat off, no artifacts"])
    requests = results["as called"].requests
    ideal = requests / rate
    overhead = {
        "heartbeat": best["as called"] - best["heartbeat off"],
        "result persistence": best["as called"] - best["persist_result=False"],
        "artifacts": best["heartbeat off"] - best["heartbeat off, no artifacts"],
        "set-up and tear-down": best["heartbeat off, no artifacts"] - best["pull alone"],
    }
    return {
        "records": results["as called"].records,
        "requests": requests,
        "retries": results["as called"].retries,
        "ideal": ideal,
        "seconds": best,
        "all_seconds": seconds,
        "pull_spans": spans,
        "phases": {name: _best(runs) for name, runs in phases.items()},
        "ratio": {name: value / ideal for name, value in best.items()},
        "overhead": overhead,
        "server_429s": rate_limited,
        "max_in_any_second": most,
    }


def _phases(state: State[Any], called: float, returned: float, span: float) -> dict[str, float]:
    """One call's time by phase, from the flow run's own start and end as the server has them:
    before the flow body, the body beyond the pull itself, the pull, after the body."""
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
    assert run.start_time is not None
    assert run.end_time is not None
    body = (run.end_time - run.start_time).total_seconds()
    return {
        "before the body": run.start_time.timestamp() - called,
        "body beyond the pull": body - span,
        "pull": span,
        "after the body": returned - run.end_time.timestamp(),
    }


def _best(runs: list[dict[str, float]]) -> dict[str, float]:
    return {phase: min(run[phase] for run in runs) for phase in runs[0]}


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="SQLAlchemy URL (default: a temporary SQLite file)")
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many per variant")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, prefect_api():
        database = arguments.database or f"sqlite:///{Path(folder) / 'bench.db'}"
        figures = run(database, arguments.records, arguments.rate, arguments.rounds)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "api.json").write_text(json.dumps(figures, indent=2))
    limit = arguments.rate + MAX_CONCURRENCY
    print(
        f"api-pull: {figures['records']:.0f} records in {figures['requests']:.0f} requests "
        f"({figures['retries']} retried 503s) of {PAGE_SIZE}, limit {arguments.rate}/s: "
        f"ideal {figures['ideal']:.2f} s"
    )
    for name, value in figures["seconds"].items():
        target = f" (target <= {TARGET_RATIO})" if name == "as called" else ""
        print(f"  {name:<30} {value:6.2f} s  ratio {figures['ratio'][name]:.3f}{target}")
    print("flow overhead, from the differences between variants:")
    for name, value in figures["overhead"].items():
        print(f"  {name:<30} {value:+6.2f} s")
    print("by phase, within each call (best of the rounds; the flow run's start and end):")
    for name, parts in figures["phases"].items():
        print(
            f"  {name:<30} " + ", ".join(f"{part} {value:.2f} s" for part, value in parts.items())
        )
    print(
        f"server: max {figures['max_in_any_second']:.0f} requests in any one-second window "
        f"(must be <= {limit}), {figures['server_429s']:.0f} answered 429"
    )


if __name__ == "__main__":
    main()
