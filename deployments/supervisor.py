"""Run the Prefect worker under a supervisor that stops it in the right order on SIGTERM.

`python -m deployments.supervisor [--limit N]` (what `make worker` starts) runs `prefect worker
start --pool batchflows` as its child. A plain SIGTERM (or SIGINT) to the supervisor, which is
what `docker stop`, Kubernetes and `systemctl stop` send to a service's main process, first
sends SIGTERM to every flow-run subprocess of the worker and waits for them: each lets its
chunk in flight commit or roll back, records the stop and ends Crashed, so its concurrency
slot is freed. Only then does the worker itself get SIGTERM. A worker signalled directly
kills its flow runs without a word and leaves them Running (see docs/operations.md).

The grace period (`BATCHFLOWS_STOP_TIMEOUT_SECONDS`, default 60) must stay below the
platform's own (`docker stop -t`, `terminationGracePeriodSeconds`, systemd `TimeoutStopSec`).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from types import FrameType

from deployments import processes
from deployments.bootstrap import POOL

STOP_TIMEOUT_VAR = "BATCHFLOWS_STOP_TIMEOUT_SECONDS"
DEFAULT_STOP_TIMEOUT_SECONDS = 60.0


def supervise(command: list[str], stop_timeout: float) -> int:
    """Run `command` (a worker) until it exits or we are told to stop; its exit code.

    The worker leads its own session, so a signal to our process group does not reach it
    before its flow runs are stopped.
    """
    worker = subprocess.Popen(command, start_new_session=True)
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"supervisor {os.getpid()}: worker {worker.pid} started: {' '.join(command)}", flush=True)
    while worker.poll() is None:
        if stopping.wait(0.5):
            print(f"supervisor: stopping the flow runs of worker {worker.pid}, then it", flush=True)
            processes.stop(worker.pid, timeout=stop_timeout)
            break
    code = worker.wait()
    print(f"supervisor: worker {worker.pid} exited with {code}", flush=True)
    return 0 if stopping.is_set() else code


def stop_timeout_from_env() -> float:
    """The grace period for flow runs to stop, from $BATCHFLOWS_STOP_TIMEOUT_SECONDS."""
    raw = os.environ.get(STOP_TIMEOUT_VAR, "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_STOP_TIMEOUT_SECONDS
    except ValueError:
        raise SystemExit(f"${STOP_TIMEOUT_VAR}: {raw!r} is not a number of seconds") from None
    if seconds <= 0:
        raise SystemExit(f"${STOP_TIMEOUT_VAR}: {raw!r} must be more than 0 seconds")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=POOL, help="work pool to poll")
    parser.add_argument("--limit", type=int, default=4, help="flow runs at once")
    arguments = parser.parse_args()
    command = processes.worker_command(arguments.pool, arguments.limit)
    sys.exit(supervise(command, stop_timeout_from_env()))


if __name__ == "__main__":
    main()
