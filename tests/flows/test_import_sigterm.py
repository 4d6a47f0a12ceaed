"""SIGTERM mid-import (what a stopping worker or container gets): a clean stop, an exact resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from prefect.settings import PREFECT_API_URL

from bench.generate import KEY, RULES
from flows.import_csv import import_csv
from tests.flows.helpers import (
    committed_chunks,
    expected_ids,
    make_users,
    query,
    slow_down_inserts,
    table_ids,
)
from tests.flows.test_import_faults import CHILD


def test_sigterm_mid_import_stops_cleanly_and_the_rerun_gives_the_uninterrupted_result(
    tmp_path: Path, postgres_url: str
) -> None:
    users = make_users(tmp_path, postgres_url, 4000)
    # Each chunk's insert takes 50 ms longer, so the signal lands mid-import.
    slow_down_inserts(postgres_url)
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(users.path), postgres_url],
        env=env,
        cwd=Path(__file__).parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while committed_chunks(postgres_url) < 8:
            assert child.poll() is None, "the import ended before it could be stopped"
            assert time.monotonic() < deadline, "the import never got going"
            time.sleep(0.02)
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

    resumed = import_csv(
        source=str(users.path),
        table="users",
        key=KEY,
        rules=RULES,
        chunk_size=100,
        import_id="killed",
        database=postgres_url,
    )
    uninterrupted = expected_ids(users, "first")
    assert resumed.resumed_chunks == stopped_at
    assert resumed.total == 4000
    assert (resumed.inserted, resumed.updated) == (len(uninterrupted), 0)
    assert resumed.skipped == 4000 - users.generated.invalid - len(uninterrupted)
    assert resumed.failed == users.generated.invalid
    assert table_ids(postgres_url) == uninterrupted
    assert query(
        postgres_url, "SELECT count(*), count(DISTINCT chunk_index) FROM batchflows_chunks"
    )[0] == (40, 40)
    rejects = query(postgres_url, "SELECT count(*), count(DISTINCT line) FROM batchflows_rejects")
    assert rejects[0] == (users.generated.invalid, users.generated.invalid)
