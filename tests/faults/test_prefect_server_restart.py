"""The Prefect server stops and starts again while an import runs.

Fault: the server the flow run reports to is stopped mid-import (its process group gets
SIGTERM) and started again on the same port and database a few seconds later. Expected: the
data never depends on the server: the run either finishes (Prefect's client retries its
calls while the server is away) or fails, and then a rerun with the same import_id resumes;
either way the table ends exactly as after an uninterrupted import.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from deployments import processes
from tests.flows.helpers import (
    IMPORT_CHILD,
    committed_chunks,
    make_users,
    resume_and_check,
    slow_down_inserts,
)


@pytest.mark.timeout(600)
def test_prefect_server_restarted_mid_import_leaves_the_data_exact(
    tmp_path: Path, postgres_url: str
) -> None:
    users = make_users(tmp_path, postgres_url, 4000)
    slow_down_inserts(postgres_url, 0.1)
    home = Path(tempfile.mkdtemp(prefix="batchflows-restart-"))
    port = processes.free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = processes.prefect_env(home, api_url)
    server = processes.spawn(processes.server_command(port), env, home / "server.log")
    child: subprocess.Popen[bytes] | None = None
    try:
        processes.wait_healthy(api_url, server, timeout=240)
        child = subprocess.Popen(
            [sys.executable, "-c", IMPORT_CHILD, str(users.path), postgres_url],
            env=env,
            cwd=processes.ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 180
        while committed_chunks(postgres_url) < 8:
            assert child.poll() is None, "the import ended before the server stopped"
            assert time.monotonic() < deadline, "the import never got going"
            time.sleep(0.05)
        processes.stop(server.pid)
        stopped_at = committed_chunks(postgres_url)
        time.sleep(3)
        server = processes.spawn(processes.server_command(port), env, home / "server.log")
        processes.wait_healthy(api_url, server, timeout=240)
        code = child.wait(timeout=300)
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        processes.stop(server.pid)
        shutil.rmtree(home, ignore_errors=True)

    assert stopped_at < 40, "the import ended before the server stopped"
    # Finished (code 0): every chunk is in the ledger and the rerun only confirms it.
    # Failed: the rerun resumes from what committed. The data is the same either way.
    assert code == 0 or committed_chunks(postgres_url) < 40
    resume_and_check(users, postgres_url, committed_chunks(postgres_url))
