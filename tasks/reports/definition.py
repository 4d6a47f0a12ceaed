"""Report definitions: `reports/<name>.yaml`, or one ad-hoc query.

A definition has a title, typed `filters` (bound as `:name` parameters, never pasted into
SQL) and one or more read-only queries; each query may show as a table and feed a chart. A
query's SQL may differ per backend (`sql: {postgresql: ..., sqlite: ...}`) where date
functions differ. With `period_hours`, every query also gets `:period_start` and
`:period_end` (UTC), and the filter `period_hours` may change the period.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, model_validator

from tasks.errors import InputError

REPORTS_DIR = Path(__file__).resolve().parents[2] / "reports"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
FilterType = Literal["str", "int", "float", "bool", "date", "datetime"]
_TYPES: dict[str, type] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "date": dt.date,
    "datetime": dt.datetime,
}
PERIOD_FILTER = "period_hours"


class FilterSpec(BaseModel):
    """One typed filter; without a default it must be given."""

    type: FilterType = "str"
    default: Any = None
    required: bool = False
    description: str = ""


class ChartSpec(BaseModel):
    """A chart of one query: x column, one or more y columns."""

    kind: Literal["line", "bar"]
    x: str
    y: list[str] = Field(min_length=1)
    title: str = ""
    stacked: bool = False


class QuerySpec(BaseModel):
    """One read-only query, shown as a table and/or a chart."""

    name: str = Field(pattern=r"^[A-Za-z0-9_ -]{1,64}$")
    title: str = ""
    sql: str | dict[Literal["postgresql", "sqlite"], str]
    table: bool = True
    chart: ChartSpec | None = None

    def sql_for(self, backend: str) -> str:
        """The SQL for `backend`."""
        if isinstance(self.sql, str):
            return self.sql
        if backend not in self.sql:
            raise InputError(f"query {self.name!r} has no SQL for {backend}")
        return self.sql[backend]


class ReportDefinition(BaseModel):
    """A whole report."""

    name: str
    title: str
    description: str = ""
    period_hours: int | None = Field(default=None, gt=0)
    filters: dict[str, FilterSpec] = Field(default_factory=dict)
    queries: list[QuerySpec] = Field(min_length=1)
    main: str | None = None
    max_table_rows: int = Field(default=500, gt=0)
    # Set only for a definition shipped in reports/ (the daily summary reads the bookkeeping
    # tables); an ad-hoc query, which a caller writes, never reads them.
    shipped: bool = Field(default=False, exclude=True)

    @model_validator(mode="after")
    def _main_exists(self) -> ReportDefinition:
        names = [q.name for q in self.queries]
        if len(set(names)) != len(names):
            raise ValueError("query names must be unique")
        if self.main is not None and self.main not in names:
            raise ValueError(f"main {self.main!r} is not one of the queries {names}")
        return self

    @property
    def main_query(self) -> QuerySpec:
        """The query whose rows the CSV format holds (the first unless `main` names one)."""
        return next((q for q in self.queries if q.name == self.main), self.queries[0])


def load_definition(name: str, root: Path = REPORTS_DIR) -> ReportDefinition:
    """`reports/<name>.yaml`, checked; errors name the file and the field."""
    if not _NAME.match(name):
        raise InputError(
            f"parameter 'name': {name!r} is not a report name (lower-case letters, digits, "
            "'-', '_'); see the files in reports/"
        )
    path = root / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in root.glob("*.yaml"))
        raise InputError(f"parameter 'name': no report {name!r} (known: {known})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with title and queries")
    try:
        definition = ReportDefinition.model_validate({**data, "name": name})
        return definition.model_copy(update={"shipped": True})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: {where}: {first['msg']}") from exc


def ad_hoc(query: str, title: str | None) -> ReportDefinition:
    """A one-query report; its filters are the values given, bound by name."""
    return ReportDefinition(
        name="query",
        title=title or "Query report",
        queries=[QuerySpec(name="query", title="", sql=query)],
    )


def bind_filters(
    definition: ReportDefinition, given: Mapping[str, Any], now: dt.datetime, ad_hoc: bool
) -> dict[str, Any]:
    """The typed values every query may bind: filters, then the period if the report has one."""
    specs = dict(definition.filters)
    if definition.period_hours is not None:
        specs.setdefault(PERIOD_FILTER, FilterSpec(type="int", default=definition.period_hours))
    unknown = sorted(set(given) - set(specs))
    if unknown and not ad_hoc:
        raise InputError(
            f"parameter 'filters': {unknown} are not filters of report {definition.name!r} "
            f"(it has {sorted(specs)})"
        )
    values: dict[str, Any] = dict(given) if ad_hoc else {}
    for name, spec in specs.items():
        if name not in given:
            if spec.required:
                raise InputError(f"parameter 'filters': {name!r} is required ({spec.type})")
            values[name] = _convert(name, spec, spec.default)
            continue
        values[name] = _convert(name, spec, given[name])
    if definition.period_hours is not None:
        hours = values[PERIOD_FILTER]
        if not isinstance(hours, int) or hours <= 0:
            raise InputError(f"parameter 'filters': {PERIOD_FILTER} must be a positive integer")
        values["period_end"] = now
        values["period_start"] = now - dt.timedelta(hours=hours)
    return values


def _convert(name: str, spec: FilterSpec, value: Any) -> Any:
    if value is None:
        return None
    try:
        return TypeAdapter(_TYPES[spec.type]).validate_python(value, strict=False)
    except ValidationError as exc:
        raise InputError(
            f"parameter 'filters': {name!r}: {value!r} is not a {spec.type} "
            f"({exc.errors()[0]['msg']})"
        ) from exc
