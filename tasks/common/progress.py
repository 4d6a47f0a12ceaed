"""Progress and summaries in the Prefect UI: artifacts that a flow run updates in place.

A run gets one progress artifact (a percentage) and one markdown status table, both updated as
work completes (at most every `min_interval` seconds, and always at the end), then table
artifacts with the summary. A run that fails leaves its last counts in the status table under
the reason it stopped, instead of a table some updates behind that still looks alive. Outside
a flow run (plain-function tests) every call is a no-op.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any, Self, cast
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.context import FlowRunContext

from tasks.common.run_log import run_logger

# How long a failing run waits for its last status to reach the Prefect API: the failure may
# be the API's, and the run's own state must not wait behind a write that cannot succeed.
FAILED_WRITE_SECONDS = 10.0
REASON_CHARS = 500


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) from free text."""
    text = "-".join(parts).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:100] or "batchflows"


def markdown_table(rows: Mapping[str, object]) -> str:
    """One-row markdown table: column per key."""
    header = " | ".join(rows)
    values = " | ".join(_cell(v) for v in rows.values())
    rule = " | ".join("---" for _ in rows)
    return f"| {header} |\n| {rule} |\n| {values} |"


def _cell(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def fenced(text: str) -> str:
    """`text` as a fenced code block, so the UI shows it verbatim: a fence longer than any run
    of backticks inside keeps a message that holds markdown (a file name, a CSV value) inert."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


class RunProgress:
    """The live artifacts of one flow run, written on a thread of their own.

    The flow never waits for the Prefect API to show its progress: each write goes to one
    writer thread, in order, and an update still waiting there is replaced by the next one.
    `close()` waits for the writes, so the summary is in place when the flow returns. A write
    that fails is logged as a warning: progress shown in the UI never fails the work. Used as
    a context manager it closes itself, and an exception leaving the block is shown first.
    """

    def __init__(self, title: str, description: str, min_interval: float = 1.0) -> None:
        self.title = title
        self.min_interval = min_interval
        self.progress_id: UUID | None = None
        self.status_id: UUID | None = None
        self.last_update = 0.0
        self.last_percent = 0.0
        self.last_status: Mapping[str, object] = {}
        self._writer: ThreadPoolExecutor | None = None
        self._queued_update: Future[None] | None = None
        if FlowRunContext.get() is not None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-progress")
            self._write(self._create, description)

    def update(
        self,
        percent: float,
        status: Mapping[str, object],
        *,
        force: bool = False,
        summary: Mapping[str, object] | None = None,
    ) -> None:
        """Show `percent` done and a one-row status table (and a summary under it, at the
        end); throttled unless `force`."""
        self.last_percent = min(max(percent, 0.0), 100.0)
        self.last_status = status
        now = time.monotonic()
        if self._writer is None or (not force and now - self.last_update < self.min_interval):
            return
        self.last_update = now
        markdown = f"### {self.title}\n\n{markdown_table(status)}"
        if summary is not None:
            markdown += f"\n\n#### Summary\n\n{markdown_table(summary)}"
        self._replace_update(self._show, self.last_percent, markdown)

    def failed(self, exc: BaseException) -> None:
        """Show why the run stopped above its last counts, and the percentage the work got to
        (throttled updates included), waiting `FAILED_WRITE_SECONDS` at most for the API."""
        if self._writer is None:
            return
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if len(reason) > REASON_CHARS:
            reason = reason[:REASON_CHARS] + "…"
        markdown = f"### {self.title}\n\n**Stopped:**\n\n{fenced(reason)}"
        if self.last_status:
            markdown += f"\n\n{markdown_table(self.last_status)}"
        written = self._replace_update(self._show, self.last_percent, markdown)
        try:
            if written is not None:
                written.result(timeout=FAILED_WRITE_SECONDS)
        except FutureTimeout:
            run_logger().warning("progress of %r: the reason it stopped not shown", self.title)
        finally:
            self._writer.shutdown(wait=False, cancel_futures=True)
            self._writer = None

    def table(self, key: str, rows: Sequence[Mapping[str, Any]], description: str) -> None:
        """A table artifact (kept under `key`, so the UI shows its history across runs)."""
        self._write(
            create_table_artifact,
            table=[dict(row) for row in rows],
            key=artifact_key(key),
            description=description,
        )

    def link(self, key: str, link: str, text: str, description: str) -> None:
        """A link artifact, e.g. to the file the run published."""
        self._write(
            create_link_artifact,
            link=link,
            link_text=text,
            key=artifact_key(key),
            description=description,
        )

    def close(self) -> None:
        """Wait until every write is done; the flow calls this before it returns."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.failed(exc)
        self.close()

    def _replace_update(self, write: Callable[..., object], *args: Any) -> Future[None] | None:
        """Queue a status write in place of the one still waiting, if any."""
        if self._queued_update is not None:
            self._queued_update.cancel()
        self._queued_update = self._write(write, *args)
        return self._queued_update

    def _write(
        self, write: Callable[..., object], *args: Any, **kwargs: Any
    ) -> Future[None] | None:
        if self._writer is None:
            return None
        context = contextvars.copy_context()
        return self._writer.submit(context.run, self._logged, write, *args, **kwargs)

    def _logged(self, write: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        try:
            write(*args, **kwargs)
        except Exception as exc:
            run_logger().warning("progress of %r not shown in the UI: %s", self.title, exc)

    def _create(self, description: str) -> None:
        self.progress_id = cast(
            UUID, create_progress_artifact(progress=0.0, description=description)
        )
        self.status_id = cast(
            UUID,
            create_markdown_artifact(
                markdown=f"### {self.title}\n\nstarting…", description=description
            ),
        )

    def _show(self, percent: float, markdown: str) -> None:
        if self.progress_id is None or self.status_id is None:
            return
        update_progress_artifact(self.progress_id, percent)
        with get_client(sync_client=True) as client:
            client.update_artifact(self.status_id, ArtifactUpdate(data=markdown))
