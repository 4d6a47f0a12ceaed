"""The report's steps as Prefect tasks: gather the data, process it into a page, generate the
file. Each is a thin wrapper over the plain functions beside it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.common.retry import transient_retries
from tasks.db.engine import get_engine
from tasks.db.select import Rows
from tasks.email.address import normalize_address
from tasks.email.smtp import resolve_smtp
from tasks.errors import InputError
from tasks.exports.files import Published, check_filename, exports_root, resolve_destination
from tasks.reports.charts import chart_png, data_uri
from tasks.reports.data import gather
from tasks.reports.definition import ReportDefinition, ad_hoc, bind_filters, load_definition
from tasks.reports.mail import mail_report
from tasks.reports.publish import publish_report, report_filename
from tasks.reports.render import Page, make_page, render_csv, render_html, render_pdf

Format = Literal["html", "pdf", "csv"]


@dataclass(frozen=True)
class Gathered:
    """A report's definition, the values bound into its queries, and their rows."""

    definition: ReportDefinition
    values: dict[str, Any]
    results: list[Rows]


def plan_report(
    *,
    name: str | None,
    query: str | None,
    title: str | None,
    filters: dict[str, Any],
    destination: str,
    filename: str | None,
    email_to: list[str] | None,
    smtp: str | None,
) -> tuple[ReportDefinition, dict[str, Any]]:
    """Check the parameters (nothing is read or written yet): definition and bound values."""
    for number, address in enumerate(email_to or [], start=1):
        normalize_address(address, f"parameter 'email_to' item {number}")
    if email_to:
        resolve_smtp(smtp)
    if (name is None) == (query is None):
        raise InputError("give exactly one of the parameters 'name' and 'query'")
    definition = load_definition(name) if name is not None else ad_hoc(str(query), title)
    resolve_destination(destination, exports_root())
    if filename is not None:
        check_filename(filename)
    values = bind_filters(definition, filters, dt.datetime.now(dt.UTC), ad_hoc=query is not None)
    return definition, values


@task(name="gathering-data", cache_policy=NO_CACHE, **transient_retries(3))
def gather_data(
    definition: ReportDefinition, values: dict[str, Any], database: str | None
) -> Gathered:
    """Run every query in one read-only snapshot."""
    return Gathered(definition, values, gather(get_engine(database), definition, values))


@task(name="processing", cache_policy=NO_CACHE)
def process(gathered: Gathered, now: dt.datetime) -> Page:
    """Charts rendered to images, tables formatted: the page model."""
    charts = {
        spec.name: data_uri(chart_png(spec.chart, rows))
        for spec, rows in zip(gathered.definition.queries, gathered.results, strict=True)
        if spec.chart is not None
    }
    return make_page(gathered.definition, gathered.results, charts, gathered.values, now)


def render(format: Format, page: Page, gathered: Gathered) -> tuple[bytes, int]:
    """The file's bytes in `format`, and the rows it holds."""
    if format == "csv":
        main = gathered.definition.main_query.name
        rows = next(r for r in gathered.results if r.name == main)
        return render_csv(rows), len(rows.rows)
    html = render_html(page)
    rows_total = sum(len(r.rows) for r in gathered.results)
    if format == "pdf":
        return render_pdf(html), rows_total
    return html.encode("utf-8"), rows_total


@task(name="generating", cache_policy=NO_CACHE, **transient_retries(3))
def generate(
    *,
    format: Format,
    page: Page,
    gathered: Gathered,
    destination: str,
    filename: str | None,
    now: dt.datetime,
    expires_at: dt.datetime,
    database: str | None,
    flow_run_id: str | None,
) -> tuple[Published, int]:
    """Render the file and publish it under the exports root, recorded to expire."""
    data, rows = render(format, page, gathered)
    name = filename or report_filename(gathered.definition.name, format, now)
    published = publish_report(
        get_engine(database),
        data,
        destination=destination,
        filename=name,
        format=format,
        source=f"report {gathered.definition.name}",
        rows=rows,
        expires_at=expires_at,
        flow_run_id=flow_run_id,
    )
    return published, rows


mail_report_task = task(name="mail-report", cache_policy=NO_CACHE, **transient_retries(3))(
    mail_report
)
