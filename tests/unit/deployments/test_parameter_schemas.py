"""Each deployment's parameter form refuses out-of-bounds values before a run is created.

The bounds live in the flows' signatures (`Annotated[int, Field(gt=0)]`), so they reach the
parameter schema that the Prefect UI form, `prefect deployment run` and the server check.
One row per bound: flow name, parameter, a value the schema refuses, a value it accepts.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.exceptions import ParameterTypeError
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import validate

ROOT = Path(__file__).resolve().parents[3]
DEPLOYMENTS: list[dict[str, Any]] = yaml.safe_load((ROOT / "prefect.yaml").read_text())[
    "deployments"
]

BOUNDS: list[tuple[str, str, Any, Any]] = [
    ("import-csv", "chunk_size", 0, 1),
    ("import-csv", "max_concurrency", 0, 1),
    ("import-csv", "max_error_rate", 1.5, 1.0),
    ("import-csv", "max_error_rate", -0.1, 0.0),
    ("import-csv", "key", [], ["email"]),
    ("import-csv", "delimiter", ";;", ";"),
    ("import-csv", "table", "", "users"),
    ("import-csv", "on_conflict", "replace", "update"),
    ("import-csv", "rules", {"name": {"min_length": -1}}, {"name": {"min_length": 0}}),
    ("import-csv", "rules", {"name": {"choices": []}}, {"name": {"choices": ["a"]}}),
    ("import-csv", "import_id", "x" * 65, "x" * 64),
    ("export-table", "chunk_size", 0, 1),
    ("export-table", "max_concurrency", 0, 1),
    ("export-table", "expires_in_hours", -1, 0),
    ("cleanup", "retention_days", -1, 0),
]

# Bounded in the schema only (`schema_bounds`): a direct call reaches the job's own check,
# whose InputError names the parameter (tests/flows/test_import_csv.py, test_export_table.py).
FORM_ONLY = {
    ("import-csv", "max_error_rate"),
    ("import-csv", "delimiter"),
    ("export-table", "chunk_size"),
}

# Required parameters a direct call must give besides the one under test.
REQUIRED: dict[str, dict[str, Any]] = {
    "import-csv": {"source": "users.csv", "table": "users", "key": ["email"]},
}


@cache
def _flow(entrypoint: str) -> Flow[..., Any]:
    return load_flow_from_entrypoint(str(ROOT / entrypoint))


@cache
def _schema(entrypoint: str) -> dict[str, Any]:
    schema: dict[str, Any] = parameter_schema(_flow(entrypoint)).model_dump_for_openapi()
    return schema


def _cases() -> list[Any]:
    cases = []
    for deployment in DEPLOYMENTS:
        name = _flow(deployment["entrypoint"]).name
        for flow, parameter, bad, good in BOUNDS:
            if flow == name:
                cases.append(
                    pytest.param(
                        deployment["entrypoint"],
                        parameter,
                        bad,
                        good,
                        id=f"{deployment['name']}-{parameter}={bad!r}",
                    )
                )
    return cases


CASES = _cases()


def test_every_bounded_flow_has_a_deployment() -> None:
    covered = {_flow(entrypoint).name for entrypoint, *_ in (case.values for case in CASES)}
    assert covered == {flow for flow, *_ in BOUNDS}


@pytest.mark.parametrize(("entrypoint", "parameter", "bad", "good"), CASES)
def test_the_deployment_form_refuses_a_value_out_of_bounds(
    entrypoint: str, parameter: str, bad: Any, good: Any
) -> None:
    schema = _schema(entrypoint)
    refused = validate({parameter: bad}, schema, raise_on_error=False, ignore_required=True)
    accepted = validate({parameter: good}, schema, raise_on_error=False, ignore_required=True)
    assert refused, f"{parameter}={bad!r} passes the schema"
    assert not accepted, [error.message for error in accepted]


@pytest.mark.parametrize(
    ("entrypoint", "parameter", "bad", "good"),
    [case for case in CASES if (_flow(case.values[0]).name, case.values[1]) not in FORM_ONLY],
)
def test_a_direct_call_refuses_the_same_value(
    entrypoint: str, parameter: str, bad: Any, good: Any
) -> None:
    flow = _flow(entrypoint)
    given = REQUIRED.get(flow.name, {})
    flow.validate_parameters(given | {parameter: good})
    with pytest.raises(ParameterTypeError):
        flow.validate_parameters(given | {parameter: bad})


@pytest.mark.parametrize(
    ("entrypoint", "parameter", "bad", "good"),
    [case for case in CASES if (_flow(case.values[0]).name, case.values[1]) in FORM_ONLY],
)
def test_a_form_only_bound_leaves_a_direct_call_to_the_job_check(
    entrypoint: str, parameter: str, bad: Any, good: Any
) -> None:
    flow = _flow(entrypoint)
    given = REQUIRED.get(flow.name, {})
    assert flow.validate_parameters(given | {parameter: bad})[parameter] == bad
    assert flow.validate_parameters(given | {parameter: good})[parameter] == good
