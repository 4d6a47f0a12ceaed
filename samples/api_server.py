"""A small json-server look-alike on loopback, for tests and the benchmark.

`GET /<collection>` pages like json-server (`_page`/`_limit`, `_start`/`_limit`, `_sort`/
`_order`, `<field>_gte`, `X-Total-Count`, `Link` with `rel="next"`/`"last"`), by `cursor`
with the records in an envelope, or as Stripe does (`limit`, `starting_after`, `has_more`).
`POST /<collection>` stores records once per `Idempotency-Key` (a repeated key gets the first
answer again). The server can rate-limit
(429 with `Retry-After` beyond `limit_per_second` in any one-second window), demand a token,
and run `hooks` that inject failures. It records every request's arrival time, query and
idempotency key, so tests can assert what it saw.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import sqlalchemy as sa

from tasks.db.engine import get_engine


@dataclass
class Seen:
    """One request as the server received it."""

    at: float
    method: str
    path: str
    query: dict[str, str]
    idempotency_key: str | None
    authorization: str | None = None
    body: Any = None
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Reply:
    """A canned answer a hook returns instead of the normal one.

    Faults: `trickle_seconds` sends the body one byte at a time with that pause between bytes;
    `cut_after` announces the whole body but closes the connection after that many bytes.
    """

    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    after_processing: bool = False
    trickle_seconds: float = 0.0
    cut_after: int | None = None


Hook = Callable[[Seen], Reply | None]
_PAGING = frozenset({"cursor", "limit", "starting_after"})


class FakeApi:
    """The server's state; `run()` serves it on a free loopback port."""

    def __init__(
        self,
        collections: dict[str, list[dict[str, Any]]] | None = None,
        *,
        limit_per_second: int | None = None,
        retry_after: str = "1",
        token: str | None = None,
        counts: bool = True,
        envelope: bool = False,
    ) -> None:
        self.collections = collections or {}
        self.limit_per_second = limit_per_second
        self.retry_after = retry_after
        self.token = token
        self.counts = counts
        self.envelope = envelope
        self.hooks: list[Hook] = []
        self.seen: list[Seen] = []
        self.stored: dict[str, list[Any]] = {}
        self.answers: dict[str, tuple[int, str]] = {}
        self.lock = threading.Lock()
        self._served: deque[float] = deque()
        self.url = ""

    @contextmanager
    def run(self) -> Iterator[FakeApi]:
        """Serve until the block ends."""
        server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    def arrivals(self, method: str | None = None) -> list[float]:
        with self.lock:
            return [s.at for s in self.seen if method is None or s.method == method]

    def max_in_any_second(self, method: str | None = None) -> int:
        """The most requests that arrived within any window [t, t + 1 s)."""
        times = sorted(self.arrivals(method))
        most, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= 1.0:
                start += 1
            most = max(most, end - start + 1)
        return most

    def answer(self, seen: Seen) -> Reply:
        """The reply to one request (hooks first, then auth, rate limit, then the data)."""
        for hook in list(self.hooks):
            reply = hook(seen)
            if reply is not None and not reply.after_processing:
                return reply
            if reply is not None:
                self.handle(seen)
                return reply
        if self.token is not None and seen.authorization != self.token:
            return Reply(401, json.dumps({"error": "unauthorized"}))
        if self._over_limit(seen.at):
            return Reply(429, "{}", {"Retry-After": self.retry_after})
        return self.handle(seen)

    def _over_limit(self, now: float) -> bool:
        if self.limit_per_second is None:
            return False
        with self.lock:
            while self._served and now - self._served[0] >= 1.0:
                self._served.popleft()
            if len(self._served) >= self.limit_per_second:
                return True
            self._served.append(now)
            return False

    def handle(self, seen: Seen) -> Reply:
        name = seen.path.strip("/").split("/")[0]
        if seen.method == "GET":
            return self._list(name, seen.query)
        key = seen.idempotency_key or ""
        with self.lock:
            if key and key in self.answers:
                status, text = self.answers[key]
                return Reply(status, text)
            self.stored.setdefault(name, []).append(seen.body)
            text = json.dumps({"ok": True})
            if key:
                self.answers[key] = (201, text)
        return Reply(201, text)

    def _list(self, name: str, query: dict[str, str]) -> Reply:
        records = list(self.collections.get(name, []))
        for param, value in query.items():
            if param.endswith("_gte"):
                column = param.removesuffix("_gte")
                records = [r for r in records if _at_least(r.get(column), value)]
            elif param not in _PAGING and any(param in r for r in records):
                records = [r for r in records if str(r.get(param)) == value]
        if "_sort" in query:
            column = query["_sort"]
            records.sort(key=lambda r: r[column], reverse=query.get("_order") == "desc")
        total = len(records)
        if "limit" in query:
            return _stripe_list(records, query)
        limit = int(query.get("_limit", total or 1))
        headers: dict[str, str] = {}
        if "cursor" in query or (self.envelope and "_page" not in query):
            start = int(query.get("cursor", "0"))
            page = records[start : start + limit]
            more = start + limit < total
            envelope = {"data": page, "next_cursor": str(start + limit) if more else None}
            return Reply(200, json.dumps(envelope))
        if "_page" in query:
            number = int(query["_page"])
            start = (number - 1) * limit
            last = max(1, -(-total // limit))
            if self.counts:
                kept = urlencode({k: v for k, v in query.items() if k not in ("_page", "_limit")})
                base = f"{self.url}/{name}?{kept + '&' if kept else ''}_limit={limit}&_page="
                links = [f'<{base}{last}>; rel="last"']
                if number < last:
                    links.append(f'<{base}{number + 1}>; rel="next"')
                headers["Link"] = ", ".join(links)
        else:
            start = int(query.get("_start", "0"))
        if self.counts:
            headers["X-Total-Count"] = str(total)
        return Reply(200, json.dumps(records[start : start + limit]), headers)


class _QuietServer(ThreadingHTTPServer):
    """No traceback when a client hangs up first (as the timeout tests make it do)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        del request, client_address


def _handler_for(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

        def _serve(self) -> None:
            at = time.monotonic()
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen = Seen(
                at,
                self.command,
                parts.path,
                query,
                self.headers.get("Idempotency-Key"),
                self.headers.get("Authorization"),
                json.loads(body) if body else None,
                headers=dict(self.headers.items()),
            )
            with api.lock:
                api.seen.append(seen)
            reply = api.answer(seen)
            seen.status = reply.status
            data = reply.body.encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if reply.cut_after is not None:
                self.wfile.write(data[: reply.cut_after])
                self.wfile.flush()
                self.close_connection = True
            elif reply.trickle_seconds:
                self._trickle(data, reply.trickle_seconds)
            else:
                self.wfile.write(data)

        def _trickle(self, data: bytes, pause: float) -> None:
            try:
                for position in range(len(data)):
                    self.wfile.write(data[position : position + 1])
                    self.wfile.flush()
                    time.sleep(pause)
            except OSError:
                self.close_connection = True

        do_GET = _serve  # noqa: N815 - http.server's naming
        do_POST = _serve  # noqa: N815
        do_PUT = _serve  # noqa: N815
        do_PATCH = _serve  # noqa: N815

    return Handler


def _stripe_list(records: list[dict[str, Any]], query: dict[str, str]) -> Reply:
    """Stripe's list shape: `limit`, `starting_after=<id>`, `{"data": [...], "has_more": ...}`."""
    start = 0
    if "starting_after" in query:
        ids = [str(record["id"]) for record in records]
        if query["starting_after"] not in ids:
            return Reply(400, json.dumps({"error": "no such object"}))
        start = ids.index(query["starting_after"]) + 1
    limit = int(query["limit"])
    page = records[start : start + limit]
    body = {"object": "list", "data": page, "has_more": start + limit < len(records)}
    return Reply(200, json.dumps(body))


def items(count: int, *, start: int = 1) -> list[dict[str, Any]]:
    """`count` records with an id, a name and an `updated_at` that grows with the id."""
    return [
        {"id": i, "name": f"item {i}", "updated_at": _clock(i)} for i in range(start, start + count)
    ]


def _clock(second: int) -> str:
    """An ISO timestamp `second` seconds after 2024-01-01T00:00:00 (the same day)."""
    return f"2024-01-01T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"


def _at_least(value: Any, bound: str) -> bool:
    """json-server's `_gte`: numbers compare as numbers, everything else as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value >= float(bound)
    return value is not None and str(value) >= bound


class RemoteApi:
    """A `FakeApi` serving from another process: no GIL shared with the client under test.

    Timing tests and the benchmark use it, so the server's clock reads arrivals as a real
    server would, not delayed by the client's threads. Arrival times are CLOCK_MONOTONIC,
    comparable across processes on Linux.
    """

    def __init__(self, connection: Connection, url: str) -> None:
        self._connection = connection
        self.url = url

    def ask(self, command: str) -> Any:
        """Run `command` (clear, max_in_any_second, rate_limited, requests, arrivals) in the
        server."""
        self._connection.send(command)
        return self._connection.recv()


@contextmanager
def serve_elsewhere(
    collections: dict[str, list[dict[str, Any]]],
    limit_per_second: int | None,
    fail_every: int | None = None,
) -> Iterator[RemoteApi]:
    """Serve `collections` from a child process until the block ends; with `fail_every` n,
    every n-th GET is answered 503 (a sick API: 20 gives 5 % of answers)."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_serve, args=(collections, limit_per_second, theirs, fail_every))
    child.start()
    try:
        yield RemoteApi(ours, ours.recv())
    finally:
        ours.send("stop")
        child.join(timeout=10)


def _serve(
    collections: dict[str, list[dict[str, Any]]],
    limit_per_second: int | None,
    connection: Connection,
    fail_every: int | None = None,
) -> None:
    api = FakeApi(collections, limit_per_second=limit_per_second)
    if fail_every:
        api.hooks.append(_failing_every(fail_every))
    answers: dict[str, Callable[[], Any]] = {
        "clear": api.seen.clear,
        "max_in_any_second": api.max_in_any_second,
        "rate_limited": lambda: sum(1 for seen in api.seen if seen.status == 429),
        "requests": lambda: len(api.seen),
        "arrivals": api.arrivals,
    }
    with api.run():
        connection.send(api.url)
        while (command := connection.recv()) != "stop":
            connection.send(answers[command]())


def _failing_every(count: int) -> Hook:
    """A hook answering 503 to every `count`-th GET."""
    gets = itertools.count(1)

    def hook(seen: Seen) -> Reply | None:
        if seen.method == "GET" and next(gets) % count == 0:
            return Reply(503, json.dumps({"error": "service unavailable"}))
        return None

    return hook


def create_items_table(database_url: str, name: str = "items") -> None:
    """The pull target: id (primary key), name, updated_at."""
    metadata = sa.MetaData()
    sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text),
        sa.Column("updated_at", sa.Text),
    )
    metadata.create_all(get_engine(database_url))
