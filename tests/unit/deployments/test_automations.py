"""The automations the bootstrap upserts: the zombie window and what each one matches."""

from __future__ import annotations

from uuid import uuid4

import pytest
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from deployments.automations import (
    ERROR_RATE_BODY,
    RUN_FAILED_BODY,
    error_rate_automation,
    run_failed_automation,
    zombie_after_seconds,
    zombie_automation,
)
from tasks.imports.alerts import ERROR_RATE_EVENT, error_rate_reason
from tasks.imports.ledger import ImportTotals


def test_the_zombie_window_defaults_to_three_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCHFLOWS_ZOMBIE_AFTER_SECONDS", raising=False)
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 45}):
        assert zombie_after_seconds() == 135
    with temporary_settings(restore_defaults={PREFECT_FLOWS_HEARTBEAT_FREQUENCY}):
        assert zombie_after_seconds() == 540  # Prefect's default heartbeat: every 180 s
    monkeypatch.setenv("BATCHFLOWS_ZOMBIE_AFTER_SECONDS", "75")
    assert zombie_after_seconds() == 75


@pytest.mark.parametrize("value", ["soon", "5", "-1"])
def test_a_zombie_window_prefect_cannot_take_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("BATCHFLOWS_ZOMBIE_AFTER_SECONDS", value)
    with pytest.raises(ValueError, match="BATCHFLOWS_ZOMBIE_AFTER_SECONDS"):
        zombie_after_seconds()


def test_the_zombie_trigger_is_prefects_documented_one() -> None:
    trigger = zombie_automation(90).trigger.model_dump(mode="json")
    assert trigger["posture"] == "Proactive"
    assert trigger["after"] == ["prefect.flow-run.heartbeat"]
    assert set(trigger["expect"]) == {
        "prefect.flow-run.heartbeat",
        "prefect.flow-run.Completed",
        "prefect.flow-run.Failed",
        "prefect.flow-run.Cancelled",
        "prefect.flow-run.Crashed",
    }
    assert trigger["for_each"] == ["prefect.resource.id"]
    assert trigger["within"] == 90


def test_alerts_match_failed_runs_of_the_pool_and_the_error_rate_event() -> None:
    block = uuid4()
    failed = run_failed_automation(block, "batchflows").trigger.model_dump(mode="json")
    assert set(failed["expect"]) == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert failed["match_related"] == {
        "prefect.resource.role": "work-pool",
        "prefect.resource.name": "batchflows",
    }
    rate = error_rate_automation(block).trigger.model_dump(mode="json")
    assert rate["expect"] == [ERROR_RATE_EVENT]
    for body in (RUN_FAILED_BODY, ERROR_RATE_BODY):
        assert "{{ deployment.name }}" in body
        assert "{{ flow_run|ui_url }}" in body
        assert "Reason: " in body


def test_the_error_rate_alert_fires_only_above_the_limit() -> None:
    totals = ImportTotals(total=200, inserted=170, updated=0, skipped=0, failed=30, chunks=2)
    assert error_rate_reason(totals, 0.15, "a.csv") is None  # exactly 15 %: not above
    reason = error_rate_reason(totals, 0.1, "a.csv")
    assert reason == (
        "a.csv: 30 of 200 rows rejected (15.0%), over alert_error_rate 10.0%; "
        "the rejects are in batchflows_rejects"
    )
    empty = ImportTotals(total=0, inserted=0, updated=0, skipped=0, failed=0, chunks=0)
    assert error_rate_reason(empty, 0.0, "a.csv") is None
