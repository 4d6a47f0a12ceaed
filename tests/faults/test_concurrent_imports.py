"""Two imports at once: into one table with overlapping keys, and the same import twice.

The guarantee (docs/operations.md): per key. Imports into one table may run at the same time;
each key ends up holding exactly one whole row, from one of the files, and each run counts
it once: skip mode inserts each key once (the other run counts it skipped), update mode
inserts it once and the later writer updates it once. A deadlock or a key added by the other
run in between is retried or resolved inside the chunk, never shown to the user.
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import Any

import pytest

from flows.import_csv import ImportResult, import_csv
from samples.users import KEY, RULES, create_users_table
from tests.flows.helpers import make_users, query, resume_and_check, slow_down_inserts

COLUMNS = ["id", "email", "name", "age", "score", "active", "created_at", "bio"]


def _write(path: Path, label: str, numbers: range) -> dict[str, tuple[str, int, str]]:
    """A users file whose rows all say which file they come from; email -> (name, age, bio)."""
    rows: dict[str, tuple[str, int, str]] = {}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for n in range(numbers.start, numbers.stop):
            email, age = f"u{n}@example.org", (n % 90) + (1 if label == "A" else 5)
            bio = f"from {label}, row {n}"
            writer.writerow([n, email, f"{label}-{n}", age, "1.50", "true", "2024-01-01", bio])
            rows[email] = (f"{label}-{n}", age, bio)
    return rows


def _in_threads(*calls: dict[str, Any]) -> list[ImportResult | BaseException]:
    """Run import_csv once per set of parameters, all at once; results or errors in order."""
    results: list[ImportResult | BaseException] = [RuntimeError("did not run")] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index: int, parameters: dict[str, Any]) -> None:
        start.wait()
        try:
            results[index] = import_csv(**parameters)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(240)
    return results


@pytest.mark.timeout(300)
@pytest.mark.parametrize("on_conflict", ["skip", "update"])
def test_two_imports_into_one_table_with_overlapping_keys_keep_every_key_once_and_whole(
    tmp_path: Path, postgres_url: str, on_conflict: str
) -> None:
    create_users_table(postgres_url, replace=True)
    a = _write(tmp_path / "a.csv", "A", range(0, 3000))
    b = _write(tmp_path / "b.csv", "B", range(1500, 4500))
    common = {"table": "users", "key": ["email"], "on_conflict": on_conflict}
    results = _in_threads(
        {**common, "source": str(tmp_path / "a.csv"), "chunk_size": 100, "database": postgres_url},
        {**common, "source": str(tmp_path / "b.csv"), "chunk_size": 70, "database": postgres_url},
    )

    first, second = results
    assert isinstance(first, ImportResult), first
    assert isinstance(second, ImportResult), second
    table = {
        str(r.email): (str(r.name), int(r.age), str(r.bio))
        for r in query(postgres_url, "SELECT email, name, age, bio FROM users")
    }
    assert len(table) == 4500  # no key lost; the unique key forbids doubles
    for email, row in table.items():
        assert row in (a.get(email), b.get(email)), f"{email}: {row} is no file's whole row"
    assert first.inserted + second.inserted == 4500
    assert (first.failed, second.failed) == (0, 0)
    overlap = 1500
    if on_conflict == "skip":
        assert first.skipped + second.skipped == overlap
        assert (first.updated, second.updated) == (0, 0)
    else:
        assert first.updated + second.updated == overlap
        # The later writer of each shared key won: its row is the one in the table.
        assert sum(1 for email in table if email in a and email in b) == overlap


@pytest.mark.timeout(300)
def test_the_same_import_id_started_twice_at_once_applies_every_chunk_once(
    tmp_path: Path, postgres_url: str
) -> None:
    users = make_users(tmp_path, postgres_url, 4000)
    slow_down_inserts(postgres_url, 0.02)
    parameters = {
        "source": str(users.path),
        "table": "users",
        "key": KEY,
        "rules": RULES,
        "chunk_size": 100,
        "import_id": "killed",
        "database": postgres_url,
    }
    results = _in_threads(parameters, dict(parameters))

    # The second run joins the first: each chunk is claimed by whichever run gets its ledger
    # row first; the other waits for that chunk's commit and takes its counts.
    for result in results:
        assert isinstance(result, ImportResult), result
        assert result.total == 4000
    ledger = "SELECT count(*), count(DISTINCT chunk_index) FROM batchflows_chunks"
    assert tuple(query(postgres_url, ledger)[0]) == (40, 40)
    resume_and_check(users, postgres_url, 40)
