"""A real SMTP server on loopback (aiosmtpd) that records what it receives, for tests and bench.

It can refuse chosen recipients with 550, answer 421 to every Nth MAIL FROM, and drop the
connection at every Nth DATA before answering (the message is then not delivered). It records
the arrival time of every MAIL FROM (every attempt) and every delivered message with its
Message-ID, so tests can assert exactly-once delivery and the rate the server saw.
"""

from __future__ import annotations

import multiprocessing
import socket
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import default
from multiprocessing.connection import Connection
from typing import Any

from aiosmtpd.controller import Controller

START_ATTEMPTS = 5


@dataclass(frozen=True)
class Delivered:
    """One message the server accepted."""

    at: float
    recipient: str
    message_id: str
    subject: str
    content: bytes


@dataclass
class Recorder:
    """The aiosmtpd handler: answers as configured and records everything."""

    refuse: set[str] = field(default_factory=set)
    temporary_every: int = 0
    drop_every: int = 0
    mails: list[float] = field(default_factory=list)
    delivered: list[Delivered] = field(default_factory=list)
    datas: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        del server, session
        with self._lock:
            self.mails.append(time.monotonic())
            count = len(self.mails)
        if self.temporary_every and count % self.temporary_every == 0:
            return "421 4.7.0 Try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        del server, session, options
        if address.lower() in self.refuse:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        del session
        with self._lock:
            self.datas += 1
            drop = bool(self.drop_every) and self.datas % self.drop_every == 0
        if drop:
            server.transport.close()
            return "451 4.3.0 Connection dropped"
        content = bytes(envelope.original_content or envelope.content)
        headers = BytesHeaderParser(policy=default).parsebytes(content)
        now = time.monotonic()
        with self._lock:
            for recipient in envelope.rcpt_tos:
                self.delivered.append(
                    Delivered(
                        now,
                        recipient.lower(),
                        str(headers.get("Message-ID", "")),
                        str(headers.get("Subject", "")),
                        content,
                    )
                )
        return "250 OK: queued"

    def recipients(self) -> list[str]:
        """Every delivered recipient, once per delivery."""
        with self._lock:
            return [d.recipient for d in self.delivered]


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most events that fall in any half-open interval [t, t + window)."""
    ordered = sorted(times)
    best = 0
    for index, start in enumerate(ordered):
        best = max(best, bisect_left(ordered, start + window, lo=index) - index)
    return best


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def smtp_server(recorder: Recorder) -> Iterator[str]:
    """Serve `recorder` on a free loopback port; yields `smtp://127.0.0.1:PORT`."""
    for attempt in range(START_ATTEMPTS):
        port = _free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=port, ready_timeout=10)
        try:
            controller.start()
        except (OSError, RuntimeError):
            if attempt == START_ATTEMPTS - 1:
                raise
            continue
        try:
            yield f"smtp://127.0.0.1:{port}"
        finally:
            controller.stop()
        return


def _serve(connection: Connection, options: dict[str, Any]) -> None:
    recorder = Recorder(**options)
    with smtp_server(recorder) as url:
        connection.send(url)
        connection.recv()  # any message: stop
        connection.send((list(recorder.mails), recorder.recipients()))


@contextmanager
def smtp_server_elsewhere(**options: Any) -> Iterator[SmtpProcess]:
    """The recording server (`Recorder(**options)`) in a child process, so it never competes
    with the sender for the GIL and measures arrival times faithfully; `.stop()` returns its
    MAIL times and delivered recipients."""
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(theirs, options), daemon=True
    )
    process.start()
    try:
        yield SmtpProcess(str(ours.recv()), ours)
    finally:
        process.terminate()
        process.join(10)


@dataclass
class SmtpProcess:
    """A recording SMTP server running in a child process."""

    url: str
    connection: Connection

    def stop(self) -> tuple[list[float], list[str]]:
        """Stop serving; the MAIL FROM times (monotonic clock) and delivered recipients."""
        self.connection.send("stop")
        mails, recipients = self.connection.recv()
        return mails, recipients
