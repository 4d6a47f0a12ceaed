"""The export's disk fills up mid-way.

Fault: the export runs in a child process whose files may not grow past 256 KiB
(RLIMIT_FSIZE, with SIGXFSZ ignored, so a write past it fails as a full disk does: EFBIG,
like ENOSPC). Expected: the run fails with the operating system's message naming the problem,
no file exists under the final name, every temporary part file is removed, and the same
export succeeds once there is room.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from flows.export_table import export_table
from tests.flows.helpers import execute

EXPORT_CHILD = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
from flows.export_table import export_table
try:
    export_table(table="wide", format="csv", compression="none", chunk_size=2000,
                 filename="wide.csv", database=sys.argv[1])
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(3)
"""


@pytest.mark.timeout(240)
def test_a_full_disk_fails_the_export_clearly_and_leaves_no_file(
    tmp_path: Path, postgres_url: str
) -> None:
    execute(
        postgres_url,
        "CREATE TABLE wide (id bigint PRIMARY KEY, payload text NOT NULL)",
        "INSERT INTO wide SELECT n, repeat(md5(n::text), 8) FROM generate_series(1, 10000) n",
    )
    root = Path(os.environ["BATCHFLOWS_EXPORTS_ROOT"])
    child = subprocess.run(
        [sys.executable, "-c", EXPORT_CHILD, postgres_url],
        env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )

    assert child.returncode == 3, child.stdout[-2000:] + child.stderr[-2000:]
    assert "File too large" in child.stdout.splitlines()[-1]
    leftovers = [path.name for path in root.rglob("*") if path.is_file()]
    assert leftovers == []  # neither wide.csv nor any .wide.csv.<token>.part/.tmp file

    done = export_table(
        table="wide", format="csv", compression="none", filename="wide.csv", database=postgres_url
    )
    assert done.rows == 10000
    assert Path(done.path) == root / "exports" / "wide.csv"
    assert Path(done.path).stat().st_size > 256 * 1024
