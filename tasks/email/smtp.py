"""Which SMTP server, and one reused connection to it that sorts answers into kinds.

`smtp` is chosen like `database`: a value containing `://` is a URL (`smtp://host:port`,
`smtp+starttls://user:password@host:587`, `smtps://host:465`), any other value names a saved
prefect-email `EmailServerCredentials` block, and `None` falls back to $BATCHFLOWS_SMTP_URL.
Passwords stay in `SecretStr` and never appear in a message or a log.

A `SmtpSession` keeps one connection for a whole batch and reconnects after a drop. Each send
ends as `accepted`, `transient` (4xx, a dropped or refused connection: worth retrying) or
`permanent` (5xx for this recipient: retrying cannot help).
"""

from __future__ import annotations

import os
import smtplib
import ssl
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from prefect_email import EmailServerCredentials
from pydantic import BaseModel, SecretStr

from tasks.errors import InputError

ENV_VAR = "BATCHFLOWS_SMTP_URL"
TIMEOUT_SECONDS = 30.0
_SCHEMES = {"smtp": ("none", 25), "smtp+starttls": ("starttls", 587), "smtps": ("ssl", 465)}

Security = Literal["none", "starttls", "ssl"]
Kind = Literal["accepted", "transient", "permanent"]


class SmtpServer(BaseModel):
    """Where to connect and how to log in; the block, when one was named, logs in itself."""

    host: str = ""
    port: int = 25
    security: Security = "none"
    username: str | None = None
    password: SecretStr | None = None
    block: str | None = None

    @property
    def label(self) -> str:
        """A name for messages, without credentials."""
        return f"block {self.block!r}" if self.block else f"{self.host}:{self.port}"


def resolve_smtp(smtp: str | None) -> SmtpServer:
    """Turn the `smtp` parameter into a server (a block is loaded now, to fail early)."""
    if smtp is None or not smtp.strip():
        raw = os.environ.get(ENV_VAR)
        if not raw:
            raise InputError(
                f"parameter 'smtp': not given and ${ENV_VAR} is not set; give a URL such as "
                "smtp://127.0.0.1:1025 or the name of an EmailServerCredentials block"
            )
        return _from_url(raw, f"${ENV_VAR}")
    if "://" in smtp:
        return _from_url(smtp, "parameter 'smtp'")
    try:
        EmailServerCredentials.load(smtp)
    except ValueError as exc:
        raise InputError(
            f"parameter 'smtp': no EmailServerCredentials block named {smtp!r} (give an "
            "smtp:// URL or save the block first)"
        ) from exc
    return SmtpServer(block=smtp)


def _from_url(raw: str, source: str) -> SmtpServer:
    parts = urlsplit(raw)
    if parts.scheme not in _SCHEMES:
        raise InputError(
            f"{source}: scheme {parts.scheme!r} is not one of {', '.join(_SCHEMES)} "
            "(e.g. smtp://127.0.0.1:1025)"
        )
    security, default_port = _SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise InputError(f"{source}: the port is not a number") from exc
    if not parts.hostname:
        raise InputError(f"{source}: the URL names no host")
    password = SecretStr(unquote(parts.password)) if parts.password else None
    return SmtpServer(
        host=parts.hostname,
        port=port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=password,
    )


@dataclass(frozen=True)
class Answer:
    """How the server answered one message."""

    kind: Kind
    code: int | None
    reason: str


class SmtpSession:
    """One SMTP connection, opened on first use and again after a drop; close when done."""

    def __init__(self, server: SmtpServer, timeout: float = TIMEOUT_SECONDS) -> None:
        self.server = server
        self.timeout = timeout
        self._conn: smtplib.SMTP | None = None
        self.connections = 0

    def __enter__(self) -> SmtpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """QUIT politely if the connection is still up."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()

    def connect(self) -> Answer | None:
        """Open the connection now if it is down (outside the rate limiter's slot, so the
        server sees MAIL FROM right after the grant); a transient answer if that fails."""
        try:
            self._connection()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return Answer("transient", None, f"cannot connect to {self.server.label}: {exc}")
        return None

    def send(self, message: bytes, sender: str, recipient: str) -> Answer:
        """Send `message` (as `smtp_bytes` made it) to `recipient` alone; the answer's kind."""
        try:
            conn = self._connection()
            conn.sendmail(sender, [recipient], message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reason = next(iter(exc.recipients.values()), (None, b""))
            return self._refused(code, reason)
        except smtplib.SMTPResponseException as exc:
            return self._refused(exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
            self._drop()
            return Answer("transient", None, f"connection lost: {exc or type(exc).__name__}")
        return Answer("accepted", 250, "accepted")

    def _refused(self, code: int | None, reason: bytes | str) -> Answer:
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        if code is None or code >= 500:
            return Answer("permanent", code, text)
        # The server may have closed the connection with its 4xx (a 451 after a dropped DATA):
        # reconnect for the next attempt rather than spend it finding a dead socket.
        self._drop()
        return Answer("transient", code, text)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None and self._conn.sock is not None:
            return self._conn
        self._conn = self._open()
        self.connections += 1
        return self._conn

    def _open(self) -> smtplib.SMTP:
        server = self.server
        if server.block is not None:
            block = EmailServerCredentials.load(server.block)
            connected: smtplib.SMTP = block.get_server()
            if connected.sock is not None:  # the block connects without a timeout
                connected.sock.settimeout(self.timeout)
            return connected
        conn: smtplib.SMTP
        if server.security == "ssl":
            conn = smtplib.SMTP_SSL(
                server.host, server.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            conn = smtplib.SMTP(server.host, server.port, timeout=self.timeout)
            if server.security == "starttls":
                conn.starttls(context=ssl.create_default_context())
        if server.username and server.password:
            conn.login(server.username, server.password.get_secret_value())
        return conn
