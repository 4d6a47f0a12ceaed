"""`make report-screenshot`: a headless Chromium picture of the users-signups HTML report.

Generates 5,000 demo users into a temporary SQLite database, runs the `report` flow on them
(HTML), and photographs the page into docs/report.png.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from prefect.testing.utilities import prefect_test_harness

from deployments.processes import ROOT
from deployments.screenshot import screenshot
from flows.import_csv import import_csv
from flows.report import report
from samples.users import KEY, RULES, create_users_table, write_users_csv

OUTPUT = ROOT / "docs" / "report.png"
USERS = 5_000


def main() -> None:
    with tempfile.TemporaryDirectory() as folder, prefect_test_harness(server_startup_timeout=90):
        os.environ["BATCHFLOWS_EXPORTS_ROOT"] = folder
        database = f"sqlite:///{Path(folder) / 'demo.db'}"
        create_users_table(database)
        write_users_csv(Path(folder) / "users.csv", USERS, invalid_rate=0.01)
        import_csv(
            source=str(Path(folder) / "users.csv"),
            table="users",
            key=KEY,
            rules=RULES,
            database=database,
        )
        result = report(
            name="users-signups",
            format="html",
            filters={"since": "2024-10-01"},
            database=database,
        )
        picture = screenshot(Path(result.path).as_uri(), OUTPUT)
    print(f"{picture.relative_to(ROOT)}: {result.path}", file=sys.stderr)


if __name__ == "__main__":
    main()
