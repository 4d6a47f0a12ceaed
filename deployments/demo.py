"""Run the main job once on the embedded defaults and print its summary.

`make demo` calls this after preparing data/generated/users.csv: the import-csv flow loads it
into the `users` table of the SQLite file data/batchflows.db (or $BATCHFLOWS_DATABASE_URL).
"""

from __future__ import annotations

from deployments.sample_data import SAMPLE, prepare
from flows.import_csv import import_csv
from samples.users import KEY, RULES


def main() -> None:
    prepare(100_000)
    result = import_csv(source=str(SAMPLE), table="users", key=KEY, rules=RULES)
    print()
    for name, value in result.model_dump().items():
        print(f"  {name:>16}: {value}")


if __name__ == "__main__":
    main()
