"""Building one message: headers checked, a deterministic Message-ID, bodies, attachments.

The Message-ID is derived from the campaign and the recipient alone, so a message sent twice
(once before a crash the ledger did not see, once on resume) carries the same id and a
receiving system can recognise the second copy.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

from tasks.email.address import check_header, normalize_address
from tasks.email.template import Rendered


@dataclass(frozen=True)
class Attachment:
    """A file attached to every message of a campaign."""

    filename: str
    data: bytes

    @property
    def mime(self) -> tuple[str, str]:
        kind = mimetypes.guess_type(self.filename)[0] or "application/octet-stream"
        main, _, sub = kind.partition("/")
        return main, sub


def message_id(campaign_id: str, recipient: str, sender: str) -> str:
    """`<hash@sender-domain>`: the same for the same campaign and recipient, every time."""
    digest = hashlib.sha256(f"{campaign_id}\x00{recipient}".encode()).hexdigest()[:40]
    domain = sender.rpartition("@")[2] or "batchflows.invalid"
    return f"<{digest}.batchflows@{domain}>"


def build_message(
    *,
    sender: str,
    recipient: str,
    rendered: Rendered,
    msg_id: str,
    campaign_id: str,
    attachments: tuple[Attachment, ...] = (),
) -> EmailMessage:
    """The message for one recipient; header values with line breaks are refused."""
    message = EmailMessage()
    message["From"] = check_header(normalize_address(sender, "parameter 'from_address'"), "From")
    message["To"] = check_header(recipient, "To")
    message["Subject"] = check_header(rendered.subject, "Subject")
    message["Message-ID"] = check_header(msg_id, "Message-ID")
    message["Date"] = formatdate(usegmt=True)
    message["X-Batchflows-Campaign"] = check_header(campaign_id, "X-Batchflows-Campaign")
    if rendered.text is not None:
        message.set_content(rendered.text)
    if rendered.html is not None:
        if rendered.text is None:
            message.set_content(rendered.html, subtype="html")
        else:
            message.add_alternative(rendered.html, subtype="html")
    for item in attachments:
        main, sub = item.mime
        message.add_attachment(
            item.data, maintype=main, subtype=sub, filename=check_header(item.filename, "filename")
        )
    return message
