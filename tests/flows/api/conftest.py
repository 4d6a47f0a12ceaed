"""The API flow tests run without Prefect's flow heartbeat.

Prefect 3.9.1 joins the heartbeat thread of a flow run, which sleeps in one-second steps, for
up to 1 s when the run ends: about a second of every flow test, for nothing these tests check.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings


@pytest.fixture(autouse=True)
def no_flow_heartbeat() -> Iterator[None]:
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
