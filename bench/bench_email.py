"""send-emails: 10,000 e-mails to a loopback SMTP server at 200/s, and a daily-summary PDF.

Baseline: the ideal time at the rate limit (10,000 / 200 = 50 s); target total <= 1.1x, and
never more than 200 messages started in any one-second window as the server saw them. The
SMTP server (aiosmtpd) runs in its own process; the flow runs in this one against a Prefect
API that is up before the clock starts. Then the daily-summary report is generated as a PDF
(over the bookkeeping the campaign just wrote) and its generation time printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from prefect.testing.utilities import prefect_test_harness

from bench.support import OUT
from flows.report import report
from flows.send_emails import send_emails
from samples.smtp_server import max_in_window, smtp_server_elsewhere

TARGET_RATIO = 1.1
MAX_CONCURRENCY = 8
BATCH_SIZE = 250
TEMPLATE = {
    "subject": "Your weekly digest, {{ name }}",
    "html": "<p>Hello {{ name }},</p><p>{{ body }}</p>",
    "text": "Hello {{ name }},\n\n{{ body }}",
}


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    """The Prefect API to run against, started and ready before any timing."""
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    with prefect_test_harness(server_startup_timeout=90):
        yield


def make_recipients(database: str, count: int) -> None:
    """A `subscribers` table of `count` distinct addresses."""
    engine = sa.create_engine(database)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS subscribers"))
        conn.execute(sa.text("CREATE TABLE subscribers (email varchar(254), name varchar(100))"))
        conn.execute(
            sa.text("INSERT INTO subscribers VALUES (:email, :name)"),
            [{"email": f"reader{i}@example.com", "name": f"Reader {i}"} for i in range(count)],
        )
    engine.dispose()


def run(database: str, count: int, rate: int) -> dict[str, float]:
    """Send `count` e-mails at `rate`/s, then time a daily-summary PDF; the figures."""
    make_recipients(database, count)
    with smtp_server_elsewhere() as server:
        started = time.perf_counter()
        result = send_emails(
            template=TEMPLATE,
            table="subscribers",
            context={"body": "Here is what happened this week."},
            rate_limit_per_second=rate,
            max_concurrency=MAX_CONCURRENCY,
            batch_size=BATCH_SIZE,
            smtp=server.url,
            database=database,
        )
        elapsed = time.perf_counter() - started
        mails, recipients = server.stop()
    started = time.perf_counter()
    pdf = report(name="daily-summary", format="pdf", database=database)
    pdf_seconds = time.perf_counter() - started
    ideal = count / rate
    return {
        "messages": count,
        "sent": result.sent,
        "delivered": len(recipients),
        "distinct_delivered": len(set(recipients)),
        "elapsed": elapsed,
        "flow_seconds": result.seconds,
        "ideal": ideal,
        "ratio": elapsed / ideal,
        "max_in_any_second": max_in_window(mails),
        "achieved_per_second": count / elapsed,
        "pdf_seconds": pdf_seconds,
        "pdf_bytes": pdf.bytes,
    }


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="SQLAlchemy URL (default: a temporary SQLite file)")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=200)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, prefect_api():
        os.environ.setdefault("BATCHFLOWS_EXPORTS_ROOT", str(Path(folder) / "exports"))
        database = arguments.database or f"sqlite:///{Path(folder) / 'bench.db'}"
        figures = run(database, arguments.messages, arguments.rate)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "email.json").write_text(json.dumps(figures, indent=2))
    print(
        f"send-emails: {figures['sent']:.0f} sent, {figures['delivered']:.0f} delivered "
        f"({figures['distinct_delivered']:.0f} distinct), limit {arguments.rate}/s, "
        f"{MAX_CONCURRENCY} connections"
    )
    print(
        f"elapsed {figures['elapsed']:.2f} s (flow body {figures['flow_seconds']:.2f} s) vs "
        f"ideal {figures['ideal']:.2f} s: ratio {figures['ratio']:.3f} (target <= {TARGET_RATIO})"
    )
    print(
        f"server: max {figures['max_in_any_second']:.0f} messages started in any one-second "
        f"window (must be <= {arguments.rate}); {figures['achieved_per_second']:.1f}/s overall"
    )
    print(
        f"report daily-summary as PDF: {figures['pdf_seconds']:.2f} s "
        f"({figures['pdf_bytes']:.0f} bytes)"
    )


if __name__ == "__main__":
    main()
