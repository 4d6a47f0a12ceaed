"""What an API run shows in the Prefect UI: live progress, then a summary table.

The progress artifact counts pages (pull) or records (push, replay) done out of the total when
the total is known; the status table beside it shows the counts so far and the requests made.
The summary artifact, at the end, adds retries, 429s seen and the achieved requests per second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from tasks.common.progress import RunProgress
from tasks.http.caller import HttpCaller


class ApiProgress:
    """The live artifacts of one API run; a context manager, like the `RunProgress` it uses."""

    def __init__(self, title: str, unit: str, caller: HttpCaller) -> None:
        self.title = title
        self.unit = unit
        self.caller = caller
        self.total: int | None = None
        self.run = RunProgress(title, f"{unit} done of {title}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.run.__exit__(*exc_info)

    def update(self, done: int, counts: Mapping[str, object]) -> None:
        """Show `done` units (of `total` when known) and the counts so far (throttled)."""
        percent = 100.0 * done / self.total if self.total else 0.0
        self._show(percent, done, counts, force=False)

    def finish(self, done: int, counts: Mapping[str, object]) -> dict[str, object]:
        """Complete the progress and publish the summary table; returns its row."""
        self.total = done if self.total is None else self.total
        self._show(100.0, done, counts, force=True)
        row = {**counts, **self.caller.summary().model_dump()}
        self.run.table(
            f"{self.title}-summary",
            [row],
            f"{self.title}: counts, retries, 429s seen and the achieved requests per second",
        )
        return row

    def _show(self, percent: float, done: int, counts: Mapping[str, object], force: bool) -> None:
        of = "?" if self.total is None else f"{self.total:,}"
        status = {self.unit: f"{done:,} / {of}", **counts, "requests": self.caller.stats.requests}
        self.run.update(percent, status, force=force)
