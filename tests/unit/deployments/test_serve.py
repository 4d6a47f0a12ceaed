"""Serve mode builds the deployments of prefect.yaml, with their schedules and limits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from deployments.processes import ROOT
from deployments.serve import load_config, schedule_of, to_runner_deployment


def test_every_deployment_of_prefect_yaml_is_served_as_declared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    specs = load_config()
    served = {d.name: d for d in map(to_runner_deployment, specs)}

    assert set(served) == {spec["name"] for spec in specs}
    for spec in specs:
        deployment = served[spec["name"]]
        assert deployment.parameters == (spec.get("parameters") or {})
        assert deployment.description == spec["description"]
    daily = served["daily"].schedules
    assert daily is not None
    assert [(s.schedule.cron, s.active) for s in daily] == [("30 3 * * *", True)]  # type: ignore[union-attr]
    imports = served["import-csv"].concurrency_limit
    assert imports == 2
    assert served["import-csv"].concurrency_options is not None
    assert served["import-csv"].concurrency_options.collision_strategy == "ENQUEUE"


def test_an_interval_schedule_keeps_its_paused_state() -> None:
    schedule = schedule_of({"interval": 3600, "active": False})
    assert (schedule.interval, schedule.active) == (timedelta(hours=1), False)
    with pytest.raises(ValueError, match="cron or interval"):
        schedule_of({"rrule": "FREQ=DAILY"})
