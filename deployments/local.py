"""Local Prefect for batchflows: `python -m deployments.local COMMAND`: server, deploy, worker,
service (the jobs HTTP API), stop, demo.

State lives in the checkout, under `.prefect/` (git-ignored): PREFECT_HOME (the server's SQLite
database), PID files and logs. The server listens on 127.0.0.1:$BATCHFLOWS_PREFECT_PORT (4200 by
default); `deploy`, `worker` and `demo` use $PREFECT_API_URL when set, else that server. A server
that answers or a worker whose PID still runs is reused, so every command can run again; `stop`
ends only what these commands started, by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from deployments import processes
from deployments.bootstrap import POOL
from deployments.processes import ROOT
from samples.users import KEY, RULES

STATE = ROOT / ".prefect"
HOME = STATE / "home"
PORT = int(os.environ.get("BATCHFLOWS_PREFECT_PORT", "4200"))
LOCAL_API = f"http://127.0.0.1:{PORT}/api"
API_URL = os.environ.get("PREFECT_API_URL") or LOCAL_API
WORKER_LIMIT = int(os.environ.get("BATCHFLOWS_WORKER_LIMIT", "4"))
SERVICE_PORT = int(os.environ.get("BATCHFLOWS_SERVICE_PORT", "8000"))
SERVICE_URL = f"http://127.0.0.1:{SERVICE_PORT}"
DEMO_ROWS = 100_000


def env() -> dict[str, str]:
    """Environment of every Prefect process started from here."""
    # BATCHFLOWS_HOME fills the pull step of prefect.yaml, so flow runs work in this checkout;
    # the worker polls every 5 s (not 10) so a triggered run starts promptly.
    return processes.prefect_env(
        HOME,
        API_URL,
        BATCHFLOWS_HOME=str(ROOT),
        PREFECT_WORKER_QUERY_SECONDS=os.environ.get("PREFECT_WORKER_QUERY_SECONDS", "5"),
    )


def _pid_file(name: str) -> Path:
    return STATE / f"{name}.pid"


def running_pid(name: str) -> int | None:
    """The PID recorded for `name` if that process (group) still runs; forgets a stale one."""
    path = _pid_file(name)
    if not path.exists():
        return None
    pid = int(path.read_text())
    if processes.group_alive(pid):
        return pid
    path.unlink()
    return None


def _start(name: str, command: list[str]) -> subprocess.Popen[bytes]:
    STATE.mkdir(parents=True, exist_ok=True)
    process = processes.spawn(command, env(), STATE / f"{name}.log")
    _pid_file(name).write_text(f"{process.pid}\n")
    return process


def server() -> None:
    """The local server on 127.0.0.1:PORT, started unless its API already answers."""
    if processes.is_healthy(LOCAL_API):
        print(f"Prefect server already running at {LOCAL_API}")
        return
    if pid := running_pid("server"):
        raise SystemExit(f"server PID {pid} runs but {LOCAL_API} does not answer: make stop")
    HOME.mkdir(parents=True, exist_ok=True)
    process = _start("server", processes.server_command(PORT))
    processes.wait_healthy(LOCAL_API, process)
    print(f"Prefect server started at {LOCAL_API} (PID {process.pid}, log .prefect/server.log)")


def deploy(*, brief: bool = False) -> None:
    """Bootstrap pool, queues, limits and block, then apply every deployment of prefect.yaml;
    `brief` prints one line per deployment instead of Prefect's panels."""
    # Children, not calls: Prefect reads PREFECT_API_URL when first imported.
    for command in (["deployments.bootstrap"], ["prefect", "--no-prompt", "deploy", "--all"]):
        done = subprocess.run(
            [sys.executable, "-m", *command],
            env=env(),
            cwd=ROOT,
            capture_output=brief,
            text=True,
            check=False,
        )
        if done.returncode:
            print(done.stdout, done.stderr, sep="", end="")
            raise SystemExit(done.returncode)
        if brief:
            names = re.findall(r"Deployment '([^']+)' successfully", done.stdout)
            print(f"{command[0]}: {', '.join(names) or done.stdout.strip()}")


def worker() -> None:
    """A process worker on pool `batchflows` in the background, unless ours still runs; it runs
    under deployments.supervisor, so a plain SIGTERM stops its flow runs first."""
    if pid := running_pid("worker"):
        print(f"worker already running (PID {pid})")
        return
    process = _start("worker", processes.supervised_worker_command(POOL, WORKER_LIMIT))
    print(f"worker started on pool {POOL} (PID {process.pid}, log .prefect/worker.log)")


def service() -> None:
    """The jobs HTTP service on 127.0.0.1:SERVICE_PORT in the background, unless ours still runs."""
    if pid := running_pid("service"):
        print(f"service already running at {SERVICE_URL} (PID {pid})")
        return
    process = _start("service", processes.service_command())
    processes.wait_service(SERVICE_URL, process)
    print(f"service started at {SERVICE_URL} (PID {process.pid}, log .prefect/service.log)")


def demo_key() -> str:
    """A new API key for the owner `demo` (`python -m service.keys create`)."""
    done = subprocess.run(
        [sys.executable, "-m", "service.keys", "create", "--owner", "demo"],
        env=env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def stop() -> None:
    """Stop the service, the worker (its flow runs first), then the server, that these
    commands started."""
    for name, stop_process in (
        ("service", processes.stop),
        ("worker", processes.stop_supervisor),
        ("server", processes.stop),
    ):
        pid = running_pid(name)
        if pid and stop_process(pid):
            print(f"stopped {name} (PID {pid})")
        _pid_file(name).unlink(missing_ok=True)


def run_deployment(name: str, parameters: dict[str, Any]) -> tuple[int, str]:
    """`prefect deployment run NAME --param ... --watch`: its exit code and flow run name."""
    run_name = f"demo-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "prefect", "deployment", "run", name]
    for key, value in parameters.items():
        command += ["--param", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    command += ["--flow-run-name", run_name, "--watch", "--watch-timeout", "900"]
    return subprocess.run(command, env=env(), cwd=ROOT, check=False).returncode, run_name


def _post(path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(f"{API_URL}{path}", json=body, timeout=10)
    response.raise_for_status()
    return list(response.json())


def flow_run_id(name: str) -> str:
    """The id of the flow run called `name`."""
    (run,) = _post("/flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}})
    return str(run["id"])


def summary(run_id: str) -> list[dict[str, Any]]:
    """The rows of the flow run's summary table artifact."""
    artifacts = _post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    for artifact in artifacts:
        if (artifact.get("key") or "").endswith("-summary"):
            rows: list[dict[str, Any]] = json.loads(artifact["data"])
            return rows
    return []


def ui_url(run_id: str) -> str:
    """The flow run's page in the UI served next to the API."""
    return f"{API_URL.removesuffix('/api')}/runs/flow-run/{run_id}"


def demo() -> int:
    """Server, deployments, worker, sample file, then the import-csv deployment, watched."""
    from deployments.sample_data import SAMPLE, prepare  # noqa: PLC0415  (slow: loads the flows)

    started = time.monotonic()
    if API_URL == LOCAL_API:
        server()
    deploy(brief=True)
    worker()
    prepare(DEMO_ROWS)
    rules = {column: rule.model_dump(exclude_none=True) for column, rule in RULES.items()}
    code, name = run_deployment(
        "import-csv/import-csv",
        {"source": str(SAMPLE), "table": "users", "key": KEY, "rules": rules},
    )
    run_id = flow_run_id(name)
    for row in summary(run_id):
        print()
        for column, value in row.items():
            print(f"  {column:>16}: {value}")
    print(f"\nmake demo took {time.monotonic() - started:.0f} s; the flow run in the UI:")
    print(f"  {ui_url(run_id)}")
    service()
    print(f"\nThe jobs API at {SERVICE_URL} (docs: {SERVICE_URL}/docs), with a demo key:")
    print(f"  curl -H 'X-API-Key: {demo_key()}' {SERVICE_URL}/api/batch/queues")
    print("Stop the service, worker and server with: make stop")
    return code


def main() -> None:
    commands = {
        "server": server,
        "deploy": deploy,
        "worker": worker,
        "service": service,
        "stop": stop,
    }
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=[*commands, "demo"])
    command = parser.parse_args().command
    if command == "demo":
        sys.exit(demo())
    commands[command]()


if __name__ == "__main__":
    main()
