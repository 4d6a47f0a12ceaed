"""SIGTERM mid-import (what a stopping worker or container gets): a clean stop, an exact resume."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.flows.helpers import (
    committed_chunks,
    make_users,
    query,
    resume_and_check,
    slow_down_inserts,
    start_import_child,
)


def test_sigterm_mid_import_stops_cleanly_and_the_rerun_gives_the_uninterrupted_result(
    tmp_path: Path, postgres_url: str
) -> None:
    users = make_users(tmp_path, postgres_url, 4000)
    # Each chunk's insert takes 50 ms longer, so the signal lands mid-import.
    slow_down_inserts(postgres_url)
    child = start_import_child(users, postgres_url)
    try:
        child.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        child.wait(timeout=60)
        stopped_in = time.monotonic() - stopping
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    assert child.returncode != 0
    assert stopped_in < 30
    stopped_at = committed_chunks(postgres_url)
    assert 8 <= stopped_at < 40
    # The stop was recorded, and every row in the table belongs to a chunk in the ledger:
    # the chunk in flight committed with its ledger row or not at all.
    recorded = query(postgres_url, "SELECT status, error FROM batchflows_imports")
    assert tuple(recorded[0]) == ("failed", "stopped by TerminationSignal")
    in_ledger = query(postgres_url, "SELECT coalesce(sum(inserted), 0) FROM batchflows_chunks")
    assert query(postgres_url, "SELECT count(*) FROM users")[0][0] == in_ledger[0][0]

    resume_and_check(users, postgres_url, stopped_at)
