"""The Prefect automations batchflows relies on: zombie detection and alerts, upserted by name.

- `batchflows: crash zombie runs`: Prefect's "detect zombie flows" proactive trigger. After each
  `prefect.flow-run.heartbeat` of a run, another heartbeat or a terminal state must follow
  within `BATCHFLOWS_ZOMBIE_AFTER_SECONDS` (default three heartbeats,
  3 x `PREFECT_FLOWS_HEARTBEAT_FREQUENCY`, which is 180 s unless set, 30 s at least); if none
  comes, the run is set Crashed, which frees its concurrency slot, and the alerts fire.
- `batchflows: run failed or crashed`: a notification for every Failed or Crashed run of a
  deployment on the `batchflows` work pool.
- `batchflows: import error rate`: a notification for each `batchflows.import.error-rate`
  event, which import-csv emits when its rejected share crosses `alert_error_rate`.

Notifications go to one notification block: `BATCHFLOWS_ALERT_BLOCK` names any saved one by
its slug (`slack-webhook/ops`, `email/ops`, ...), otherwise `BATCHFLOWS_ALERT_WEBHOOK_URL` is
saved as the custom webhook block `batchflows-alerts` (JSON `{"subject", "text"}`). With
neither, the alert automations are not created. Every message names the deployment, the
run's UI link and the reason.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import cast
from uuid import UUID

from prefect.automations import Automation
from prefect.blocks.core import Block
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.settings import get_current_settings
from pydantic import BaseModel

from tasks.imports.alerts import ERROR_RATE_EVENT

ZOMBIE_AFTER_VAR = "BATCHFLOWS_ZOMBIE_AFTER_SECONDS"
ALERT_URL_VAR = "BATCHFLOWS_ALERT_WEBHOOK_URL"
ALERT_BLOCK_VAR = "BATCHFLOWS_ALERT_BLOCK"
WEBHOOK_BLOCK = "batchflows-alerts"
MISSED_HEARTBEATS = 3
MINIMUM_HEARTBEAT_SECONDS = 30

ZOMBIES = "batchflows: crash zombie runs"
RUN_FAILED = "batchflows: run failed or crashed"
ERROR_RATE = "batchflows: import error rate"

RUN_LINES = (
    "Deployment: {{ deployment.name }} (flow {{ flow.name }})\n"
    "Run: {{ flow_run.name }} {{ flow_run|ui_url }}\n"
)
RUN_FAILED_SUBJECT = (
    "batchflows: {{ deployment.name }} run {{ flow_run.name }} {{ flow_run.state.name }}"
)
RUN_FAILED_BODY = (
    RUN_LINES + "State: {{ flow_run.state.name }}\nReason: {{ flow_run.state.message }}"
)
ERROR_RATE_SUBJECT = (
    "batchflows: {{ deployment.name }} run {{ flow_run.name }} rejected too many rows"
)
ERROR_RATE_BODY = RUN_LINES + "Reason: {{ event.payload.reason }}"


class Automations(BaseModel):
    """What the bootstrap left on the server: automation names and the alert target."""

    zombie_after_seconds: float
    names: list[str]
    alert_block: str | None


def zombie_after_seconds() -> float:
    """The silence after which a running flow run counts as dead: the env var, or three
    heartbeats of the configured frequency."""
    raw = os.environ.get(ZOMBIE_AFTER_VAR, "").strip()
    if raw:
        try:
            seconds = float(raw)
        except ValueError:
            raise ValueError(f"${ZOMBIE_AFTER_VAR}: {raw!r} is not a number of seconds") from None
        if seconds < 10:
            raise ValueError(f"${ZOMBIE_AFTER_VAR}: {raw!r}: Prefect needs 10 seconds at least")
        return seconds
    frequency = get_current_settings().flows.heartbeat_frequency or 180
    return float(MISSED_HEARTBEATS * max(frequency, MINIMUM_HEARTBEAT_SECONDS))


def zombie_automation(window: float) -> Automation:
    """Prefect's documented zombie trigger: no heartbeat or end within `window` -> Crashed."""
    return Automation(
        name=ZOMBIES,
        description=f"Mark a flow run Crashed when no heartbeat came for {window:g} s",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {window:g} s: the process running this flow run "
                "died (killed, out of memory, machine lost). Rerun it to resume.",
            )
        ],
    )


def run_failed_automation(block_id: UUID, pool: str) -> Automation:
    """Notify on every Failed or Crashed flow run of a deployment on `pool`."""
    return Automation(
        name=RUN_FAILED,
        description=f"Notify when a run of a deployment on work pool {pool} fails or crashes",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "work-pool", "prefect.resource.name": pool}
            ),
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            SendNotification(
                block_document_id=block_id, subject=RUN_FAILED_SUBJECT, body=RUN_FAILED_BODY
            )
        ],
    )


def error_rate_automation(block_id: UUID) -> Automation:
    """Notify on each import whose rejected share crossed its alert_error_rate."""
    return Automation(
        name=ERROR_RATE,
        description="Notify when an import rejects more rows than its alert_error_rate",
        trigger=EventTrigger(
            expect={ERROR_RATE_EVENT},
            match=ResourceSpecification({"prefect.resource.id": "batchflows.import.*"}),
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            SendNotification(
                block_document_id=block_id, subject=ERROR_RATE_SUBJECT, body=ERROR_RATE_BODY
            )
        ],
    )


def upsert(automation: Automation) -> Automation:
    """Create `automation`, or update the one of the same name: never a duplicate."""
    # Prefect types these dual sync/async methods as a union; called from sync code they return.
    try:
        existing = cast("Automation", Automation.read(name=automation.name))
    except ValueError:
        return cast("Automation", automation.create())
    automation.id = existing.id
    automation.update()
    return automation


def alert_block() -> tuple[str, UUID] | None:
    """The notification block alerts go to (its slug and id), from the environment."""
    slug = os.environ.get(ALERT_BLOCK_VAR, "").strip()
    if slug:
        block = cast("Block", Block.load(slug))
        if block._block_document_id is None:
            raise ValueError(f"${ALERT_BLOCK_VAR}: block {slug!r} has no saved document")
        return slug, block._block_document_id
    url = os.environ.get(ALERT_URL_VAR, "").strip()
    if not url:
        return None
    webhook = CustomWebhookNotificationBlock(
        name="batchflows",
        url=url,
        json_data={"subject": "{{subject}}", "text": "{{body}}"},
    )
    block_id = cast("UUID", webhook.save(WEBHOOK_BLOCK, overwrite=True))
    return f"custom-webhook/{WEBHOOK_BLOCK}", block_id


def ensure_automations(pool: str) -> Automations:
    """Zombie detection always; the two alerts when an alert target is configured."""
    window = zombie_after_seconds()
    wanted: list[Automation] = [zombie_automation(window)]
    target = alert_block()
    if target is not None:
        wanted += [run_failed_automation(target[1], pool), error_rate_automation(target[1])]
    names = [upsert(automation).name for automation in wanted]
    return Automations(
        zombie_after_seconds=window,
        names=names,
        alert_block=target[0] if target else None,
    )
