"""A report's three forms: HTML (Jinja2, autoescaped), PDF (WeasyPrint, from that HTML), CSV.

The PDF is the HTML page printed by a real HTML-to-PDF engine, not a second layout: what the
browser shows is what the PDF holds.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel

from tasks.db.select import Rows
from tasks.reports.definition import ReportDefinition

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
REPORT_TEMPLATE = "report.html"


class Section(BaseModel):
    """One query as the page shows it: its table (first rows) and chart."""

    name: str
    title: str
    columns: list[str]
    numeric: list[bool]
    rows: list[list[str]]
    total_rows: int
    chart: str | None


class Page(BaseModel):
    """Everything the report template needs."""

    title: str
    description: str
    generated_at: str
    period: str | None
    filters: dict[str, str]
    sections: list[Section]


_env = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
)


def cell(value: Any) -> str:
    """A value as the table shows it: thousands separators, ISO times, empty for NULL."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float | Decimal):
        return f"{value:,.2f}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def numeric_columns(rows: Rows) -> list[bool]:
    """Which columns hold numbers (right-aligned): judged by their first non-NULL value."""
    kinds = []
    for index in range(len(rows.columns)):
        first = next((row[index] for row in rows.rows if row[index] is not None), None)
        kinds.append(isinstance(first, int | float | Decimal) and not isinstance(first, bool))
    return kinds


def make_page(
    definition: ReportDefinition,
    results: list[Rows],
    charts: dict[str, str],
    values: dict[str, Any],
    now: dt.datetime,
) -> Page:
    """The page model from the gathered rows and rendered charts."""
    period = None
    if "period_start" in values:
        start, end = values["period_start"], values["period_end"]
        period = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    hidden = {"period_start", "period_end"}
    sections = [
        Section(
            name=spec.name,
            title=spec.title or spec.name,
            columns=rows.columns if spec.table else [],
            numeric=numeric_columns(rows),
            rows=[[cell(v) for v in row] for row in rows.rows[: definition.max_table_rows]]
            if spec.table
            else [],
            total_rows=len(rows.rows),
            chart=charts.get(spec.name),
        )
        for spec, rows in zip(definition.queries, results, strict=True)
    ]
    return Page(
        title=definition.title,
        description=definition.description,
        generated_at=now.strftime("%Y-%m-%d %H:%M UTC"),
        period=period,
        filters={k: cell(v) for k, v in values.items() if k not in hidden and v is not None},
        sections=sections,
    )


def render_html(page: Page) -> str:
    """The report page; every value is escaped by the template engine."""
    return _env.get_template(REPORT_TEMPLATE).render(page=page)


def render_pdf(html: str) -> bytes:
    """The same HTML printed to PDF by WeasyPrint."""
    from weasyprint import HTML  # noqa: PLC0415 (imports Pango; only PDF reports need it)

    pdf: bytes = HTML(string=html, base_url=str(TEMPLATES_DIR)).write_pdf()
    return pdf


def render_csv(rows: Rows) -> bytes:
    """The main query's rows as CSV (header, RFC 4180, NULL as an empty field), UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(rows.columns)
    for row in rows.rows:
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue().encode("utf-8")
