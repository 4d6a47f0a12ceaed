"""The README's first command, as written: `make demo` in a copy of the checkout, then `make stop`.

The copy holds the checkout's files as they are (tracked and untracked, not ignored) and
borrows its `.venv`, so `make setup` has nothing to install; the server gets a free port so
a developer's own `make demo` server is left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from deployments.processes import ROOT, free_port

# make demo alone may take 600 s on a loaded machine; make stop 120 s more.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def copy_of_checkout(target: Path) -> Path:
    """The checkout's working-tree files under `target`, with a link to its .venv."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


def make(
    target: str, cwd: Path, env: dict[str, str], timeout: int
) -> subprocess.CompletedProcess[str]:
    """`make target` in `cwd`; its exit code is for the test to judge."""
    return subprocess.run(
        ["make", target],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_make_demo_imports_through_the_deployment_and_make_stop_stops_it(tmp_path: Path) -> None:
    checkout = copy_of_checkout(tmp_path)
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "BATCHFLOWS_"))
    }
    env["BATCHFLOWS_PREFECT_PORT"] = str(port)
    service = f"http://127.0.0.1:{free_port()}"
    env["BATCHFLOWS_SERVICE_PORT"] = service.rsplit(":", 1)[1]
    try:
        demo = make("demo", checkout, env, timeout=600)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        counts = dict(re.findall(r"^\s+(total|inserted|failed): (\d+)$", demo.stdout, re.M))
        assert counts == {"total": "100000", "inserted": "96959", "failed": "2046"}
        assert f"http://127.0.0.1:{port}/runs/flow-run/" in demo.stdout
        assert (checkout / "data" / "batchflows.db").is_file()
        (key,) = re.findall(rf"curl -H 'X-API-Key: (\S+)' {service}/api/batch/queues", demo.stdout)
        queues = httpx.get(f"{service}/api/batch/queues", headers={"X-API-Key": key}, timeout=10)
        assert [q["name"] for q in queues.json()["queues"]] == ["high", "default", "low"]
    finally:
        stop = make("stop", checkout, env, timeout=120)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{service}/healthz", timeout=2)
