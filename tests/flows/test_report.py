"""The report flow against real databases: HTML with tables and charts, PDF pages, CSV,
bound filters, e-mailed reports, and cleanup of expired ones."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pypdfium2 as pdfium
import pytest
import sqlalchemy as sa

from flows.cleanup import cleanup
from flows.report import report
from samples.smtp_server import Recorder, smtp_server
from samples.users import create_users_table
from tasks.errors import InputError
from tests.flows.helpers import query


@pytest.fixture
def exports_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "exports"
    monkeypatch.setenv("BATCHFLOWS_EXPORTS_ROOT", str(root))
    return root


def make_users(url: str, days: int = 40) -> int:
    """A users table with sign-ups on `days` days of 2024 (day n has n % 5 + 1 users)."""
    create_users_table(url, replace=True)
    rows = []
    number = 0
    for day in range(days):
        for _ in range(day % 5 + 1):
            number += 1
            created = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(days=day)
            rows.append(
                {
                    "id": number,
                    "email": f"u{number}@example.com",
                    "name": f"User <{number}>",
                    "age": 18 + number % 60,
                    "active": number % 3 != 0,
                    "created_at": created.isoformat() if "sqlite" in url else created,
                }
            )
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO users (id, email, name, age, active, created_at) "
                "VALUES (:id, :email, :name, :age, :active, :created_at)"
            ),
            rows,
        )
    engine.dispose()
    return number


@pytest.mark.timeout(300)
def test_html_report_has_the_tables_and_chart_images(database_url: str, exports_root: Path) -> None:
    users = make_users(database_url)
    result = report(name="users-signups", format="html", database=database_url)
    html = Path(result.path).read_text(encoding="utf-8")
    assert Path(result.path).is_relative_to(exports_root)
    assert "<h1>User sign-ups</h1>" in html
    assert len(re.findall(r'<img class="chart" alt="[^"]*" src="data:image/png;base64,', html)) == 2
    assert html.count("<table>") == 2
    assert "<td>2024-01-01</td>" in html
    assert "<td>2024-02-09</td>" in html
    assert result.rows == 40 + 4  # 40 days, 4 age bands with users in them
    assert users == sum(day % 5 + 1 for day in range(40))
    recorded = query(database_url, "SELECT format, sha256, path FROM batchflows_exports")
    assert [tuple(r) for r in recorded] == [("html", result.sha256, result.path)]


@pytest.mark.timeout(300)
def test_pdf_report_has_the_expected_pages(sqlite_url: str, exports_root: Path) -> None:
    make_users(sqlite_url, days=120)
    result = report(name="users-signups", format="pdf", database=sqlite_url)
    pdf = pdfium.PdfDocument(result.path)
    pages = [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
    # 120 table rows do not fit on one A4 page: the table runs on, the header repeated.
    assert len(pdf) >= 3
    assert "User sign-ups" in pages[0]
    assert "Sign-ups per day" in pages[0]
    assert all(f"page {n} of {len(pdf)}" in text for n, text in enumerate(pages, start=1))
    assert "2024-04-29" in "".join(pages)  # the last day
    assert "Users by age band" in pages[-1]
    image = pdf[0].render(scale=1).to_pil()
    png = exports_root / "page1.png"
    image.save(png)
    shades = image.convert("L").getcolors(maxcolors=256) or []
    assert image.size[0] > 500
    assert len(shades) > 20


@pytest.mark.timeout(300)
def test_csv_report_round_trips_the_main_query(database_url: str, exports_root: Path) -> None:
    make_users(database_url, days=10)
    result = report(
        name="users-signups",
        format="csv",
        filters={"since": "2024-01-03", "until": "2024-01-05"},
        database=database_url,
    )
    rows = list(csv.reader(io.StringIO(Path(result.path).read_text(encoding="utf-8"))))
    assert rows == [
        ["day", "signups"],
        ["2024-01-03", "3"],
        ["2024-01-04", "4"],
        ["2024-01-05", "5"],
    ]
    assert result.rows == 3


@pytest.mark.timeout(300)
def test_filter_value_with_sql_in_it_stays_a_value(database_url: str, exports_root: Path) -> None:
    make_users(database_url, days=3)
    hostile = "x' OR '1'='1'; DROP TABLE users; --"
    result = report(
        query="SELECT id, name FROM users WHERE name = :name ORDER BY id",
        filters={"name": hostile},
        format="csv",
        database=database_url,
    )
    assert Path(result.path).read_text(encoding="utf-8").splitlines() == ["id,name"]
    assert query(database_url, "SELECT count(*) FROM users")[0][0] == 6
    with pytest.raises(InputError, match="'since'"):
        report(name="users-signups", filters={"since": hostile}, database=database_url)
    with pytest.raises(InputError, match="read-only SELECT"):
        report(query="DELETE FROM users", database=database_url)


@pytest.mark.timeout(300)
def test_daily_summary_runs_on_a_fresh_database(database_url: str, exports_root: Path) -> None:
    result = report(name="daily-summary", format="html", database=database_url)
    html = Path(result.path).read_text(encoding="utf-8")
    assert "batchflows daily summary" in html
    assert "Period " in html
    assert "<td>e-mails</td>" in html


@pytest.mark.timeout(300)
def test_expired_report_is_deleted_by_cleanup(sqlite_url: str, exports_root: Path) -> None:
    result = report(name="daily-summary", format="csv", expires_in_hours=0, database=sqlite_url)
    kept = report(name="daily-summary", format="csv", expires_in_hours=24, database=sqlite_url)
    assert Path(result.path).is_file()
    removed = cleanup(database=sqlite_url)
    assert removed.export_files == 1
    assert not Path(result.path).exists()
    assert Path(kept.path).is_file()


@pytest.fixture
def smtp() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    with smtp_server(recorder) as url:
        yield url, recorder


@pytest.mark.timeout(300)
def test_report_is_mailed_once_as_an_attachment(
    sqlite_url: str, exports_root: Path, smtp: tuple[str, Recorder]
) -> None:
    url, recorder = smtp
    result = report(
        name="daily-summary",
        format="pdf",
        email_to=["boss@example.com", "Boss@example.com", "ops@example.com"],
        smtp=url,
        database=sqlite_url,
    )
    assert result.emailed is not None
    assert (result.emailed.sent, result.emailed.failed) == (2, 0)
    assert sorted(recorder.recipients()) == ["boss@example.com", "ops@example.com"]
    content = recorder.delivered[0].content
    assert b"application/pdf" in content
    assert Path(result.path).name.encode() in content


@pytest.mark.timeout(120)
def test_header_injection_in_email_to_is_refused_before_anything_runs(
    sqlite_url: str, exports_root: Path
) -> None:
    with pytest.raises(InputError, match="line break"):
        report(
            name="daily-summary",
            email_to=["a@example.com\nBcc: b@example.com"],
            smtp="smtp://127.0.0.1:1",
            database=sqlite_url,
        )
    assert not list(exports_root.rglob("*.html"))
