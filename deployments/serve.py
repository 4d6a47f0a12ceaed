"""Serve every deployment of prefect.yaml from this one process: no work pool, no worker.

`python -m deployments.serve` (or `make serve`) registers each deployment with the server
named by PREFECT_API_URL, with the names, parameters, schedules and concurrency limits of
prefect.yaml, and runs their flow runs as its own subprocesses until stopped (Ctrl-C or
SIGTERM). Work pools, queues and priorities do not apply in this mode.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron, Interval, Schedule

from deployments.processes import ROOT


def load_config(path: Path = ROOT / "prefect.yaml") -> list[dict[str, Any]]:
    """The deployments of prefect.yaml, anchors and merge keys resolved."""
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    deployments: list[dict[str, Any]] = config["deployments"]
    return deployments


def schedule_of(spec: dict[str, Any]) -> Schedule:
    """A prefect.yaml schedule entry (cron or interval) as a Prefect schedule."""
    active = bool(spec.get("active", True))
    if "cron" in spec:
        return Cron(spec["cron"], timezone=spec.get("timezone"), active=active)
    if "interval" in spec:
        return Interval(timedelta(seconds=spec["interval"]), active=active)
    raise ValueError(f"unsupported schedule {spec} (cron or interval)")


def concurrency_of(spec: int | dict[str, Any] | None) -> int | ConcurrencyLimitConfig | None:
    """A prefect.yaml concurrency_limit as `to_deployment` takes it."""
    if not isinstance(spec, dict):
        return spec
    return ConcurrencyLimitConfig(
        limit=spec["limit"],
        collision_strategy=ConcurrencyLimitStrategy(spec.get("collision_strategy", "ENQUEUE")),
        grace_period_seconds=spec.get("grace_period_seconds"),
    )


def to_runner_deployment(spec: dict[str, Any]) -> RunnerDeployment:
    """One prefect.yaml deployment, served from this process (entrypoints relative to ROOT)."""
    return RunnerDeployment.from_flow(
        load_flow_from_entrypoint(spec["entrypoint"]),
        name=spec["name"],
        description=spec.get("description"),
        tags=spec.get("tags"),
        parameters=spec.get("parameters") or {},
        schedules=[schedule_of(s) for s in spec.get("schedules") or []],
        concurrency_limit=concurrency_of(spec.get("concurrency_limit")),
    )


def main() -> None:
    os.chdir(ROOT)
    serve(*(to_runner_deployment(spec) for spec in load_config()))


if __name__ == "__main__":
    main()
