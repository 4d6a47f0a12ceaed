"""The API flows' parameter forms: every parameter described, keyword-only, HTTP ones shared."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

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
