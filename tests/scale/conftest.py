"""Scale-out tests start a Prefect server on PostgreSQL and two workers: minutes of CPU.

They run with `make test-scale` (BATCHFLOWS_TEST_SCALE=1), not in `make test`.
"""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("BATCHFLOWS_TEST_SCALE") == "1" else ["test_*.py"]
