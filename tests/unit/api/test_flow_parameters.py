"""The API flows' parameter forms: described, keyword-only, HTTP ones shared, bounds in the schema.

The bounds are read from each flow's parameter schema, the one the Prefect UI form and
`prefect deployment run` validate against, so a bad value is refused before a run exists.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from prefect.utilities.schema_tools import validate

from flows.api_pull import api_pull
from flows.api_push import api_push
from flows.replay_dead_letters import replay_dead_letters
from tasks.http.options import HttpOptions

FLOWS = [api_pull, api_push, replay_dead_letters]


@pytest.mark.parametrize("flow", FLOWS, ids=lambda flow: flow.name)
def test_every_parameter_has_a_description_in_the_ui_form(flow: Any) -> None:
    properties = flow.parameters.model_dump()["properties"]

    assert [name for name, schema in properties.items() if not schema.get("description")] == []


@pytest.mark.parametrize("flow", FLOWS, ids=lambda flow: flow.name)
def test_http_parameters_default_to_the_shared_options(flow: Any) -> None:
    signature = inspect.signature(flow.fn)
    defaults = HttpOptions()

    for name, parameter in signature.parameters.items():
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
        if name in HttpOptions.model_fields:
            assert parameter.default == getattr(defaults, name), name


# (flow, parameter, a value the form refuses, the nearest value it accepts)
BOUNDS: list[tuple[Any, str, float, float]] = [
    (api_pull, "rate_limit_per_second", 0, 0.1),
    (api_pull, "max_concurrency", 0, 1),
    (api_pull, "max_concurrency", 33, 32),
    (api_pull, "page_size", 0, 1),
    (api_pull, "max_pages", 0, 1),
    (api_pull, "request_timeout_seconds", 0, 0.5),
    (api_pull, "max_retries", -1, 0),
    (api_pull, "backoff_seconds", 0, 0.01),
    (api_pull, "breaker_failures", 0, 1),
    (api_pull, "breaker_pause_seconds", -1, 0),
    (api_push, "rate_limit_per_second", -5, 1),
    (api_push, "batch_size", 0, 1),
    (api_push, "max_retry_after", -1, 0),
    (api_push, "request_timeout_seconds", 0, 1),
    (replay_dead_letters, "older_than_minutes", -1, 0),
    (replay_dead_letters, "max_concurrency", 0, 1),
]


@pytest.mark.parametrize(
    ("flow", "name", "refused", "accepted"),
    BOUNDS,
    ids=[f"{flow.name}-{name}-{refused}" for flow, name, refused, _ in BOUNDS],
)
def test_the_parameter_schema_refuses_out_of_range_values(
    flow: Any, name: str, refused: float, accepted: float
) -> None:
    schema = flow.parameters.model_dump()

    refusals = validate({name: refused}, schema, ignore_required=True)
    assert [error.path[0] for error in refusals] == [name]
    assert validate({name: accepted}, schema, ignore_required=True) == []


@pytest.mark.parametrize("flow", FLOWS, ids=lambda flow: flow.name)
def test_one_request_has_its_own_timeout_and_timeout_seconds_limits_the_whole_run(
    flow: Any,
) -> None:
    properties = flow.parameters.model_dump()["properties"]

    assert "request_timeout_seconds" in properties
    assert "whole run" in properties["timeout_seconds"]["description"]


def test_the_pagination_form_offers_one_choice_per_strategy() -> None:
    schema = api_pull.parameters.model_dump()
    definitions = schema["definitions"]
    choices = schema["properties"]["pagination"]
    names = [ref["$ref"].rsplit("/", 1)[-1] for ref in choices.get("anyOf", choices.get("oneOf"))]

    types = {definitions[name]["properties"]["type"]["default"] for name in names}
    assert types == {"page", "offset", "cursor", "link", "starting_after"}
    assert "cursor_param" not in definitions["PagePagination"]["properties"]
