"""Messages: deterministic Message-ID, checked headers, attachments."""

from __future__ import annotations

from email import message_from_bytes

import pytest

from tasks.email.message import Attachment, build_message, message_id, smtp_bytes
from tasks.email.template import Rendered
from tasks.errors import InputError

pytestmark = pytest.mark.timeout(60)


def test_message_id_depends_only_on_campaign_and_recipient() -> None:
    first = message_id("spring", "ana@example.com", "news@example.org")
    assert first == message_id("spring", "ana@example.com", "news@example.org")
    assert first != message_id("summer", "ana@example.com", "news@example.org")
    assert first != message_id("spring", "bob@example.com", "news@example.org")
    assert first.startswith("<")
    assert first.endswith("@example.org>")


def test_message_has_both_bodies_and_the_attachment() -> None:
    rendered = Rendered(subject="Report", html="<p>hi</p>", text="hi")
    message = build_message(
        sender="news@example.org",
        recipient="ana@example.com",
        rendered=rendered,
        msg_id="<x@example.org>",
        campaign_id="c",
        attachments=(Attachment("report.pdf", b"%PDF-1.7"),),
    )
    parsed = message_from_bytes(smtp_bytes(message))
    assert parsed["Message-ID"] == "<x@example.org>"
    kinds = [part.get_content_type() for part in parsed.walk()]
    assert "text/plain" in kinds
    assert "text/html" in kinds
    assert "application/pdf" in kinds


def test_campaign_id_with_a_line_break_cannot_add_a_header() -> None:
    rendered = Rendered(subject="s", html=None, text="t")
    with pytest.raises(InputError, match="line break"):
        build_message(
            sender="news@example.org",
            recipient="ana@example.com",
            rendered=rendered,
            msg_id="<x@example.org>",
            campaign_id="c\r\nBcc: victim@example.com",
        )
