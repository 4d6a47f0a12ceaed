"""Every deployment in prefect.yaml imports, names its flow, and has valid parameter defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import validate

ROOT = Path(__file__).resolve().parents[3]
CONFIG: dict[str, Any] = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS: list[dict[str, Any]] = CONFIG["deployments"]
QUEUES = {"high", "default", "low"}
FLOWS = (
    "import-csv",
    "export-table",
    "api-pull",
    "api-push",
    "replay-dead-letters",
    "cleanup",
    "report",
    "send-emails",
)


def _flow(entrypoint: str) -> Flow[..., Any]:
    return load_flow_from_entrypoint(str(ROOT / entrypoint))


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_deployment_entrypoint_imports_a_public_flow(deployment: dict[str, Any]) -> None:
    assert _flow(deployment["entrypoint"]).name in FLOWS


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_deployment_parameters_validate_against_the_flow(deployment: dict[str, Any]) -> None:
    flow = _flow(deployment["entrypoint"])
    schema = parameter_schema(flow).model_dump_for_openapi()
    parameters = deployment.get("parameters", {})
    assert set(parameters) <= set(schema["properties"]), "unknown parameter"
    errors = validate(parameters, schema, raise_on_error=False, ignore_required=True)
    assert not errors, [error.message for error in errors]
    flow.validate_parameters(parameters | _required_placeholders(schema, parameters))


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_deployment_runs_on_a_bootstrapped_queue(deployment: dict[str, Any]) -> None:
    pool = deployment["work_pool"]
    assert pool["name"] == "batchflows"
    assert pool["work_queue_name"] in QUEUES
    assert deployment.get("description")
    assert "batchflows" in deployment.get("tags", [])


def test_every_flow_has_a_deployment_named_like_it() -> None:
    names = {(_flow(d["entrypoint"]).name, d["name"]) for d in DEPLOYMENTS}
    assert {(flow, flow) for flow in FLOWS} <= names


def test_scheduled_deployments_are_the_documented_ones() -> None:
    schedules = {d["name"]: d["schedules"] for d in DEPLOYMENTS if d.get("schedules")}
    assert schedules["nightly-users"][0]["cron"] == "0 2 * * *"
    assert schedules["hourly-users"][0]["interval"] == 3600
    assert schedules["daily"][0]["cron"].endswith("* * *")
    assert [s["active"] for s in schedules["daily"]] == [True]
    assert schedules["daily-summary"] == [{"cron": "0 6 * * *", "timezone": "UTC", "active": True}]


def test_report_and_email_deployments_run_on_the_default_queue() -> None:
    by_name = {(_flow(d["entrypoint"]).name, d["name"]): d for d in DEPLOYMENTS}
    for key in (("report", "daily-summary"), ("report", "report"), ("send-emails", "send-emails")):
        assert by_name[key]["work_pool"]["work_queue_name"] == "default"
    assert by_name["report", "daily-summary"]["parameters"]["name"] == "daily-summary"
    assert not by_name["report", "report"].get("schedules")


def test_worker_resolves_the_checkout_at_run_time() -> None:
    """The pull step names the worker's own checkout, whatever directory it was cloned to."""
    (step,) = CONFIG["pull"]
    directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
    assert directory == "{{ $BATCHFLOWS_HOME }}"


def _required_placeholders(schema: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Values for required parameters a deployment leaves to the caller, typed by the schema."""
    samples = {"string": "x", "array": ["x"], "integer": 1, "number": 1.0, "boolean": True}
    placeholders: dict[str, Any] = {}
    for name in schema.get("required", []):
        if name in given:
            continue
        kind = schema["properties"][name].get("type", "string")
        placeholders[name] = samples.get(kind, "x")
    return placeholders
