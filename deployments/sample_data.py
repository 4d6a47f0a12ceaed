"""Prepare the demo: a generated users CSV and an empty `users` table in the chosen database.

`python -m deployments.sample_data` writes data/generated/users.csv (100,000 rows, 2 % invalid,
1 % repeated emails, quoted multi-line values, non-ASCII) and creates the `users` table in
$BATCHFLOWS_DATABASE_URL, else the embedded SQLite default, if it does not exist yet.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sqlalchemy as sa

from samples.users import create_users_table, write_users_csv
from tasks.db.engine import get_engine

SAMPLE = Path("data/generated/users.csv")


def prepare(rows: int, database: str | None = None, path: Path = SAMPLE) -> Path:
    """Write the sample file (unless it exists with the same size) and ensure the table."""
    if not path.exists():
        write_users_csv(path, rows, invalid_rate=0.02, duplicate_rate=0.01)
    engine = get_engine(database)
    if not sa.inspect(engine).has_table("users"):
        create_users_table(engine.url.render_as_string(hide_password=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database", default=None, help="SQLAlchemy URL or block name")
    args = parser.parse_args()
    print(prepare(args.rows, args.database).resolve())


if __name__ == "__main__":
    main()
