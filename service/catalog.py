"""Job types: the flows deployed from prefect.yaml, read from the Prefect server.

A job type is a flow with a deployment of the same name in prefect.yaml (`import-csv/
import-csv`, `export-table/export-table`, ...), so a flow added there later becomes a type
without code changes. Variants (`import-csv-urgent`, schedules) are not types: `priority`
picks the queue instead.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowFilter,
    FlowFilterId,
)

from deployments.processes import ROOT

REFRESH_SECONDS = 30.0


@dataclass(frozen=True)
class JobType:
    """A submittable flow: its deployment, parameter schema and defaults."""

    name: str
    deployment_id: UUID
    schema: dict[str, Any]
    defaults: dict[str, Any]
    queue: str


def deployment_names(prefect_yaml: Path = ROOT / "prefect.yaml") -> list[str]:
    """The names of every deployment declared in prefect.yaml."""
    declared = yaml.safe_load(prefect_yaml.read_text()) or {}
    return [str(d["name"]) for d in declared.get("deployments") or [] if d.get("name")]


class Catalog:
    """The job types, refreshed from the Prefect server at most every REFRESH_SECONDS."""

    def __init__(self, client: PrefectClient, names: list[str]) -> None:
        self._client = client
        self._names = names
        self._types: dict[str, JobType] = {}
        self._loaded = -REFRESH_SECONDS
        self._lock = asyncio.Lock()

    async def types(self) -> dict[str, JobType]:
        """Every job type by name."""
        async with self._lock:
            if time.monotonic() - self._loaded >= REFRESH_SECONDS:
                self._types = await self._load()
                self._loaded = time.monotonic()
            return self._types

    async def get(self, name: str) -> JobType | None:
        """The type called `name`, looked up again once if it is not known yet."""
        known = await self.types()
        if name not in known and name in self._names:
            self._loaded = -REFRESH_SECONDS
            known = await self.types()
        return known.get(name)

    async def _load(self) -> dict[str, JobType]:
        deployments = await self._client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=self._names))
        )
        flow_ids = list({d.flow_id for d in deployments})
        flows = await self._client.read_flows(
            flow_filter=FlowFilter(id=FlowFilterId(any_=flow_ids))
        )
        flow_names = {f.id: f.name for f in flows}
        return {
            d.name: JobType(
                name=d.name,
                deployment_id=d.id,
                schema=dict(d.parameter_openapi_schema or {}),
                defaults=dict(d.parameters or {}),
                queue=d.work_queue_name or "default",
            )
            for d in deployments
            if flow_names.get(d.flow_id) == d.name
        }
