"""Rendering: escaped HTML with embedded charts, a PDF from the same HTML, CSV."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
from decimal import Decimal

import pypdfium2 as pdfium
import pytest

from tasks.db.select import Rows
from tasks.errors import InputError
from tasks.reports.charts import chart_png, data_uri
from tasks.reports.definition import ChartSpec, QuerySpec, ReportDefinition
from tasks.reports.render import make_page, render_csv, render_html, render_pdf

pytestmark = pytest.mark.timeout(60)

NOW = dt.datetime(2026, 11, 30, 6, tzinfo=dt.UTC)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROWS = Rows(
    "sales",
    ["region", "amount", "note"],
    [("north", Decimal("12.50"), "<script>alert(1)</script>"), ("south", 7, None)],
)
CHART = ChartSpec(kind="bar", x="region", y=["amount"])
DEFINITION = ReportDefinition(
    name="sales",
    title="Sales <b>by</b> region",
    queries=[QuerySpec(name="sales", sql="SELECT 1", chart=CHART)],
)


def test_chart_is_a_png_and_an_empty_result_still_draws_one() -> None:
    assert chart_png(CHART, ROWS).startswith(PNG_MAGIC)
    assert chart_png(CHART, Rows("sales", ROWS.columns, [])).startswith(PNG_MAGIC)
    line = ChartSpec(kind="line", x="region", y=["amount"])
    assert chart_png(line, ROWS).startswith(PNG_MAGIC)


def test_chart_of_a_column_the_query_lacks_is_refused() -> None:
    with pytest.raises(InputError, match=r"\['total'\]"):
        chart_png(ChartSpec(kind="bar", x="region", y=["total"]), ROWS)


def test_html_escapes_values_and_embeds_the_chart() -> None:
    uri = data_uri(chart_png(CHART, ROWS))
    html = render_html(make_page(DEFINITION, [ROWS], {"sales": uri}, {}, NOW))
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Sales &lt;b&gt;by&lt;/b&gt; region" in html
    assert f'src="{uri}"' in html
    png = base64.b64decode(uri.split(",", 1)[1])
    assert png.startswith(PNG_MAGIC)
    assert '<td class="num">12.50</td>' in html


def test_pdf_is_the_html_printed_and_opens() -> None:
    html = render_html(make_page(DEFINITION, [ROWS], {}, {}, NOW))
    pdf = pdfium.PdfDocument(render_pdf(html))
    assert len(pdf) == 1
    text = pdf[0].get_textpage().get_text_range()
    assert "Sales <b>by</b> region" in text
    assert "north" in text


def test_csv_round_trips_with_null_as_empty() -> None:
    data = render_csv(ROWS).decode("utf-8")
    assert list(csv.reader(io.StringIO(data))) == [
        ["region", "amount", "note"],
        ["north", "12.50", "<script>alert(1)</script>"],
        ["south", "7", ""],
    ]
