"""One small flow run against a fresh Prefect server, before any clock starts.

A new server builds the route state of each API router (FastAPI's request models and
dependencies) on the first request that reaches it: measured at about 2 s of the server's CPU
during the first import after start, on the same two cores as the run being timed. A server in
production has long been warm; this run makes the bench's server so too.
"""

from __future__ import annotations

from prefect import flow, task

from tasks.common import RunProgress


@task(name="warm-up-task")
def _step(number: int) -> int:
    return number + 1


@flow(name="bench-warm-up")
def warm_up() -> int:
    """A flow run with task runs, logs and the artifacts our flows create."""
    progress = RunProgress("warm-up", "bench warm-up")
    futures = [_step.submit(number) for number in range(3)]
    total = sum(future.result() for future in futures)
    progress.update(100.0, {"total": total}, force=True)
    progress.table("bench-warm-up", [{"total": total}], "bench warm-up")
    return total


if __name__ == "__main__":
    warm_up()
