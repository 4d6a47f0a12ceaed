"""Progress and summaries in the Prefect UI: artifacts that a flow run updates in place.

A run gets one progress artifact (a percentage) and one markdown status table, both updated as
work completes (at most every `min_interval` seconds, and always at the end), then table
artifacts with the summary. Outside a flow run (plain-function tests) every call is a no-op.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.context import FlowRunContext


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) from free text."""
    text = "-".join(parts).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:100] or "batchflows"


def markdown_table(rows: Mapping[str, object]) -> str:
    """One-row markdown table: column per key."""
    header = " | ".join(rows)
    values = " | ".join(_cell(v) for v in rows.values())
    rule = " | ".join("---" for _ in rows)
    return f"| {header} |\n| {rule} |\n| {values} |"


def _cell(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


class RunProgress:
    """The live artifacts of one flow run."""

    def __init__(self, title: str, description: str, min_interval: float = 1.0) -> None:
        self.title = title
        self.min_interval = min_interval
        self.enabled = FlowRunContext.get() is not None
        self.progress_id: UUID | None = None
        self.status_id: UUID | None = None
        self.last_update = 0.0
        if self.enabled:
            self.progress_id = cast(
                UUID, create_progress_artifact(progress=0.0, description=description)
            )
            self.status_id = cast(
                UUID,
                create_markdown_artifact(
                    markdown=f"### {title}\n\nstarting…", description=description
                ),
            )

    def update(
        self,
        percent: float,
        status: Mapping[str, object],
        *,
        force: bool = False,
        summary: Mapping[str, object] | None = None,
    ) -> None:
        """Show `percent` done and a one-row status table (and a summary under it, at the
        end); throttled unless `force`."""
        now = time.monotonic()
        if self.progress_id is None or self.status_id is None:
            return
        if not force and now - self.last_update < self.min_interval:
            return
        self.last_update = now
        update_progress_artifact(self.progress_id, min(max(percent, 0.0), 100.0))
        markdown = f"### {self.title}\n\n{markdown_table(status)}"
        if summary is not None:
            markdown += f"\n\n#### Summary\n\n{markdown_table(summary)}"
        with get_client(sync_client=True) as client:
            client.update_artifact(self.status_id, ArtifactUpdate(data=markdown))

    def table(self, key: str, rows: Sequence[Mapping[str, Any]], description: str) -> None:
        """A table artifact (kept under `key`, so the UI shows its history across runs)."""
        if self.enabled:
            create_table_artifact(
                table=[dict(row) for row in rows], key=artifact_key(key), description=description
            )
