"""Report definitions: the shipped ones load, names and filters are checked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tasks.errors import InputError
from tasks.reports.definition import REPORTS_DIR, ad_hoc, bind_filters, load_definition

pytestmark = pytest.mark.timeout(60)

NOW = dt.datetime(2026, 11, 30, 6, tzinfo=dt.UTC)


@pytest.mark.parametrize("path", sorted(REPORTS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_report_loads(path: Path) -> None:
    definition = load_definition(path.stem)
    assert definition.title
    assert definition.main_query in definition.queries


def test_daily_summary_binds_the_last_24_hours() -> None:
    values = bind_filters(load_definition("daily-summary"), {}, NOW, ad_hoc=False)
    assert values["period_end"] == NOW
    assert values["period_start"] == NOW - dt.timedelta(hours=24)
    wider = bind_filters(load_definition("daily-summary"), {"period_hours": 48}, NOW, False)
    assert wider["period_start"] == NOW - dt.timedelta(hours=48)


def test_filters_are_converted_to_their_declared_type() -> None:
    values = bind_filters(
        load_definition("users-signups"), {"since": "2024-03-01", "active": "true"}, NOW, False
    )
    assert values == {"since": dt.date(2024, 3, 1), "until": None, "active": True}


def test_unknown_filter_is_refused_with_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"\['nope'\].*'active'"):
        bind_filters(load_definition("users-signups"), {"nope": 1}, NOW, ad_hoc=False)


def test_filter_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(InputError, match=r"'since'.*not a date"):
        bind_filters(load_definition("users-signups"), {"since": "1; DROP TABLE x"}, NOW, False)


def test_ad_hoc_query_binds_the_given_values_as_they_are() -> None:
    values = bind_filters(ad_hoc("SELECT :x", None), {"x": "a'b"}, NOW, ad_hoc=True)
    assert values == {"x": "a'b"}


@pytest.mark.parametrize("name", ["../etc/passwd", "Daily", "daily summary", ""])
def test_report_name_that_is_not_a_plain_name_is_refused(name: str) -> None:
    with pytest.raises(InputError, match="parameter 'name'"):
        load_definition(name)


def test_broken_definition_names_the_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "title: x\nqueries:\n  - name: a\n    sql: SELECT 1 AS a\n"
        "    chart: {kind: pie, x: a, y: [b]}\n"
    )
    with pytest.raises(InputError, match=r"bad\.yaml: queries\.0\.chart\.kind"):
        load_definition("bad", tmp_path)
