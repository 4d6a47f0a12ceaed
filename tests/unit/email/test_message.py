"""Messages: deterministic Message-ID, checked headers, attachments."""

from __future__ import annotations

from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message

import pytest

from tasks.email.message import Attachment, build_message, message_id, smtp_bytes
from tasks.email.template import Rendered
from tasks.errors import InputError

pytestmark = pytest.mark.timeout(60)


def _build(
    rendered: Rendered, attachments: tuple[Attachment, ...] = (), campaign_id: str = "c"
) -> Message:
    return build_message(
        sender="news@example.org",
        recipient="ana@example.com",
        rendered=rendered,
        msg_id="<x@example.org>",
        campaign_id=campaign_id,
        attachments=attachments,
    )


def test_message_id_depends_only_on_campaign_and_recipient() -> None:
    first = message_id("spring", "ana@example.com", "news@example.org")
    assert first == message_id("spring", "ana@example.com", "news@example.org")
    assert first != message_id("summer", "ana@example.com", "news@example.org")
    assert first != message_id("spring", "bob@example.com", "news@example.org")
    assert first.startswith("<")
    assert first.endswith("@example.org>")


def test_message_has_both_bodies_and_the_attachment() -> None:
    rendered = Rendered(subject="Report", html="<p>hi</p>", text="hi")
    message = _build(rendered, (Attachment("report.pdf", b"%PDF-1.7"),))
    parsed = message_from_bytes(smtp_bytes(message))
    assert parsed["Message-ID"] == "<x@example.org>"
    kinds = [part.get_content_type() for part in parsed.walk()]
    assert "text/plain" in kinds
    assert "text/html" in kinds
    assert "application/pdf" in kinds


def test_campaign_id_with_a_line_break_cannot_add_a_header() -> None:
    rendered = Rendered(subject="s", html=None, text="t")
    with pytest.raises(InputError, match="line break"):
        _build(rendered, campaign_id="c\r\nBcc: victim@example.com")


def test_a_body_holding_the_boundary_cannot_end_its_part_early() -> None:
    plain = _build(Rendered(subject="s", html="<p>h</p>", text="t"))
    boundary = plain.get_boundary()
    assert boundary is not None
    hostile = (
        f"before\r\n--{boundary}\r\nContent-Type: text/html\r\n\r\nforged\r\n--{boundary}--\r\n"
    )
    rendered = Rendered(subject="s", html=f"<p>{hostile}</p>", text=hostile)
    message = _build(rendered, (Attachment("a.bin", f"--{boundary}\r\n".encode()),))
    parsed = message_from_bytes(smtp_bytes(message))
    parts = [part for part in parsed.walk() if not part.is_multipart()]
    assert [part.get_content_type() for part in parts] == [
        "text/plain",
        "text/html",
        "application/octet-stream",
    ]
    assert parts[0].get_payload(decode=True) == hostile.encode()
    assert parts[2].get_payload(decode=True) == f"--{boundary}\r\n".encode()


@pytest.mark.parametrize(
    ("subject", "sent_plain"),
    [
        ("Your weekly digest, Ana", True),
        ("Résumé für Zoë, 東京", False),
        ("=?utf-8?q?looks_encoded?=", False),
    ],
)
def test_subject_reads_back_as_written(subject: str, sent_plain: bool) -> None:
    message = _build(Rendered(subject=subject, html=None, text="t"))
    raw = message_from_bytes(smtp_bytes(message))["Subject"]
    assert (raw == subject) is sent_plain
    assert str(make_header(decode_header(raw))) == subject
