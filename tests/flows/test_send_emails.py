"""send-emails against a real SMTP server on loopback (aiosmtpd): exactly once, rate limited."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prefect.settings import PREFECT_API_URL
from prefect_email import EmailServerCredentials

from flows.send_emails import send_emails
from samples.smtp_server import Recorder, max_in_window, smtp_server, smtp_server_elsewhere
from tasks.errors import InputError
from tests.flows.helpers import query

TEMPLATE = {
    "subject": "Hello {{ name }}",
    "html": "<p>Hello {{ name }}, {{ greeting }}</p>",
    "text": "Hello {{ name }}, {{ greeting }}",
}


def make_people(url: str, count: int, extra: list[tuple[str, str]] | None = None) -> list[str]:
    """A `people` table with `count` distinct addresses (plus `extra` rows); the addresses."""
    engine = sa.create_engine(url)
    addresses = [f"person{i}@example.com" for i in range(count)]
    rows = [{"email": a, "name": f"<b>P{i}</b>"} for i, a in enumerate(addresses)]
    rows += [{"email": e, "name": n} for e, n in extra or []]
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE people (email varchar(400), name varchar(100))"))
        conn.execute(sa.text("INSERT INTO people VALUES (:email, :name)"), rows)
    engine.dispose()
    return addresses


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def smtp(recorder: Recorder) -> Iterator[str]:
    with smtp_server(recorder) as url:
        yield url


@pytest.mark.timeout(300)
def test_every_recipient_gets_exactly_one_message_despite_421_drops_and_refusals(
    database_url: str, recorder: Recorder, smtp: str
) -> None:
    recorder.refuse = {"person3@example.com"}
    recorder.temporary_every = 7
    recorder.drop_every = 9
    hostile = "evil@example.com\r\nBcc: victim@example.com"
    addresses = make_people(
        database_url,
        40,
        extra=[("PERSON1@example.com", "again"), ("person2@example.com", "again"), (hostile, "x")],
    )
    result = send_emails(
        template=TEMPLATE,
        table="people",
        context={"greeting": "welcome"},
        campaign_id="spring",
        rate_limit_per_second=100,
        max_concurrency=3,
        batch_size=7,
        backoff_seconds=0.01,
        # A quarter of the server's answers fail here, on counters shared by three threads:
        # five attempts ran out for one recipient about once in twelve runs.
        max_attempts=12,
        smtp=smtp,
        database=database_url,
    )
    delivered = Counter(recorder.recipients())
    expected = set(addresses) - {"person3@example.com"}
    assert set(delivered) == expected
    assert set(delivered.values()) == {1}
    assert "victim@example.com" not in delivered
    assert (result.total, result.sent, result.failed, result.duplicates) == (43, 39, 2, 2)
    assert result.total == result.sent + result.failed + result.skipped + result.duplicates
    rows = query(database_url, "SELECT recipient, status, smtp_code FROM batchflows_emails")
    ledger = {row.recipient: (row.status, row.smtp_code) for row in rows}
    assert ledger["person3@example.com"] == ("failed", 550)
    assert ledger[hostile.strip()][0] == "failed"
    assert ledger["person0@example.com"] == ("sent", 250)
    sample = next(d for d in recorder.delivered if d.recipient == "person0@example.com")
    assert sample.subject == "Hello <b>P0</b>"
    assert b"Hello &lt;b&gt;P0&lt;/b&gt;, welcome" in sample.content
    assert len({d.message_id for d in recorder.delivered}) == len(expected)


@pytest.mark.timeout(300)
def test_rerun_sends_nothing_twice_and_retry_failed_replays_the_refused(
    sqlite_url: str, recorder: Recorder, smtp: str
) -> None:
    make_people(sqlite_url, 10)
    recorder.refuse = {"person4@example.com", "person5@example.com"}
    options: dict[str, Any] = {
        "template": TEMPLATE,
        "table": "people",
        "context": {"greeting": "hi"},
        "campaign_id": "c-1",
        "smtp": smtp,
        "database": sqlite_url,
    }
    first = send_emails(**options)
    assert (first.sent, first.failed) == (8, 2)
    again = send_emails(**options)
    assert (again.sent, again.failed, again.skipped) == (0, 0, 10)
    recorder.refuse = set()
    replay = send_emails(**options, retry_failed=True)
    assert (replay.sent, replay.failed, replay.skipped) == (2, 0, 8)
    assert sorted(Counter(recorder.recipients()).values()) == [1] * 10
    attempts = query(
        sqlite_url, "SELECT attempts FROM batchflows_emails WHERE recipient = 'person4@example.com'"
    )
    assert attempts[0][0] == 2


@pytest.mark.timeout(300)
def test_rate_limit_holds_at_the_server(sqlite_url: str) -> None:
    make_people(sqlite_url, 60)
    # The server runs in its own process, so the arrival times it records are its own.
    with smtp_server_elsewhere(temporary_every=11) as server:
        result = send_emails(
            template=TEMPLATE,
            table="people",
            context={"greeting": "hi"},
            rate_limit_per_second=20,
            max_concurrency=4,
            batch_size=5,
            backoff_seconds=0.01,
            smtp=server.url,
            database=sqlite_url,
        )
        mails, delivered = server.stop()
    assert result.sent == 60
    assert sorted(delivered) == sorted(f"person{i}@example.com" for i in range(60))
    assert max_in_window(mails) <= 20
    assert len(mails) > 60  # the 421 answers were retried, under the same limit


@pytest.mark.timeout(120)
def test_smtp_may_name_a_saved_email_server_credentials_block(
    sqlite_url: str, recorder: Recorder, smtp: str
) -> None:
    port = int(smtp.rsplit(":", 1)[1])
    block = EmailServerCredentials(smtp_server="127.0.0.1", smtp_port=port, smtp_type="INSECURE")
    block.save("test-loopback-smtp", overwrite=True)
    make_people(sqlite_url, 3)
    result = send_emails(
        template=TEMPLATE,
        table="people",
        context={"greeting": "hi"},
        smtp="test-loopback-smtp",
        database=sqlite_url,
    )
    assert result.sent == 3
    assert len(recorder.recipients()) == 3
    with pytest.raises(InputError, match="no EmailServerCredentials block"):
        send_emails(template=TEMPLATE, table="people", smtp="no-such-block", database=sqlite_url)


@pytest.mark.timeout(120)
def test_hostile_template_is_refused_before_anything_is_sent(
    sqlite_url: str, recorder: Recorder, smtp: str
) -> None:
    make_people(sqlite_url, 3)
    with pytest.raises(InputError, match="sandbox"):
        send_emails(
            template={"subject": "x", "text": "{{ ''.__class__.__mro__[1].__subclasses__() }}"},
            table="people",
            smtp=smtp,
            database=sqlite_url,
        )
    assert recorder.mails == []


@pytest.mark.timeout(120)
def test_query_without_an_email_column_is_refused(sqlite_url: str, smtp: str) -> None:
    make_people(sqlite_url, 2)
    with pytest.raises(InputError, match="no 'email' column"):
        send_emails(
            template=TEMPLATE, query="SELECT name FROM people", smtp=smtp, database=sqlite_url
        )


CHILD = """
import sys
from flows.send_emails import send_emails
send_emails(template={"subject": "s {{ name }}", "text": "t"}, table="people",
            campaign_id="killed", rate_limit_per_second=40, max_concurrency=2, batch_size=10,
            smtp=sys.argv[1], database=sys.argv[2])
"""


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_campaign_killed_midway_and_resumed_sends_no_duplicate(
    postgres_url: str, recorder: Recorder, smtp: str
) -> None:
    addresses = make_people(postgres_url, 200)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, smtp, postgres_url],
        env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
        cwd=Path(__file__).parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sent_sql = "SELECT count(*) FROM batchflows_emails WHERE status = 'sent'"
    deadline = time.monotonic() + 120
    try:
        while len(recorder.delivered) < 60:
            assert child.poll() is None, "the campaign ended before it could be killed"
            assert time.monotonic() < deadline, "the campaign never got going"
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    in_flight = {
        row[0]
        for row in query(
            postgres_url, "SELECT recipient FROM batchflows_emails WHERE status = 'sending'"
        )
    }
    before = len(recorder.delivered)
    assert 0 < query(postgres_url, sent_sql)[0][0] < 200
    result = send_emails(
        template={"subject": "s {{ name }}", "text": "t"},
        table="people",
        campaign_id="killed",
        rate_limit_per_second=200,
        smtp=smtp,
        database=postgres_url,
    )
    delivered = Counter(recorder.recipients())
    assert set(delivered) == set(addresses)
    twice = {address for address, count in delivered.items() if count > 1}
    # Only a message in flight at the kill (accepted, not yet marked) may arrive again, and
    # then with the same Message-ID; everything the ledger had marked sent is never resent.
    assert twice <= in_flight
    for address in twice:
        assert len({d.message_id for d in recorder.delivered if d.recipient == address}) == 1
    assert result.sent == 200 - (before - len(twice))
    assert result.skipped == before - len(twice)
    assert query(postgres_url, sent_sql)[0][0] == 200
