"""Building one message: headers checked, a deterministic Message-ID, bodies, attachments.

The Message-ID is derived from the campaign and the recipient alone, so a message sent twice
(once before a crash the ledger did not see, once on resume) carries the same id and a
receiving system can recognise the second copy.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formatdate

from tasks.email.address import check_header, normalize_address
from tasks.email.template import Rendered

# The classic MIME classes build and flatten a message about four times faster than
# `EmailMessage` here (2 ms against 9 ms), which matters at hundreds of messages a second.
_SMTP_POLICY = compat32.clone(linesep="\r\n")
# Bodies in quoted-printable: readable in the raw message, 7-bit safe for any server.
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP


@dataclass(frozen=True)
class Attachment:
    """A file attached to every message of a campaign."""

    filename: str
    data: bytes

    @property
    def subtype(self) -> str:
        kind = mimetypes.guess_type(self.filename)[0] or "application/octet-stream"
        main, _, sub = kind.partition("/")
        return sub if main == "application" else "octet-stream"


def message_id(campaign_id: str, recipient: str, sender: str) -> str:
    """`<hash@sender-domain>`: the same for the same campaign and recipient, every time."""
    digest = hashlib.sha256(f"{campaign_id}\x00{recipient}".encode()).hexdigest()[:40]
    domain = sender.rpartition("@")[2] or "batchflows.invalid"
    return f"<{digest}.batchflows@{domain}>"


def _boundary(kind: str, msg_id: str) -> str:
    """A multipart boundary no part can contain: bodies are quoted-printable and attachments
    base64, and neither encoding ever writes "=_". Setting it spares the generator its
    search for a free random boundary, a regular expression compiled afresh for every
    message (15 % of the time it takes to build one)."""
    return f"=_{kind}.{hashlib.sha256(msg_id.encode()).hexdigest()[:24]}"


def _body(rendered: Rendered, msg_id: str) -> MIMEBase:
    parts = [
        MIMEText(text, subtype, _UTF8)  # type: ignore[arg-type]
        for text, subtype in ((rendered.text, "plain"), (rendered.html, "html"))
        if text is not None
    ]
    if len(parts) == 1:
        return parts[0]
    alternative = MIMEMultipart("alternative", boundary=_boundary("alternative", msg_id))
    for part in parts:
        alternative.attach(part)
    return alternative


def build_message(
    *,
    sender: str,
    recipient: str,
    rendered: Rendered,
    msg_id: str,
    campaign_id: str,
    attachments: tuple[Attachment, ...] = (),
) -> Message:
    """The message for one recipient; header values with line breaks are refused."""
    message: Message = _body(rendered, msg_id)
    if attachments:
        mixed = MIMEMultipart("mixed", boundary=_boundary("mixed", msg_id))
        mixed.attach(message)
        for item in attachments:
            part = MIMEApplication(item.data, item.subtype)
            name = check_header(item.filename, "filename")
            part.add_header("Content-Disposition", "attachment", filename=name)
            mixed.attach(part)
        message = mixed
    message["From"] = check_header(normalize_address(sender, "parameter 'from_address'"), "From")
    message["To"] = check_header(recipient, "To")
    message["Subject"] = _subject(check_header(rendered.subject, "Subject"))
    message["Message-ID"] = check_header(msg_id, "Message-ID")
    message["Date"] = formatdate(usegmt=True)
    message["X-Batchflows-Campaign"] = check_header(campaign_id, "X-Batchflows-Campaign")
    return message


def _subject(text: str) -> str:
    """Plain ASCII as it is; anything else as RFC 2047 encoded words (so is text that looks
    like one, which a reader would otherwise decode). Encoding costs a sixth of the time it
    takes to build a message, for nothing when the subject is ASCII."""
    if text.isascii() and "=?" not in text:
        return text
    return Header(text, "utf-8").encode()


def smtp_bytes(message: Message) -> bytes:
    """The message as sent over SMTP (CRLF line ends)."""
    return message.as_bytes(policy=_SMTP_POLICY)
