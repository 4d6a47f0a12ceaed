"""Generate users CSV files and the matching table, for the demo, tests and benchmarks.

The file has 8 columns, quoted multi-line values, non-ASCII names, and on request a share of
invalid rows (each kind of fault the importer must reject) and of rows repeating an earlier
email (the key), so an import exercises validation, rejects and de-duplication.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from tasks.imports.rules import ColumnRule

COLUMNS = ["id", "email", "name", "age", "score", "active", "created_at", "bio"]
KEY = ["email"]
RULES = {"email": ColumnRule(format="email"), "age": ColumnRule(min=0, max=150)}

_NAMES = ["Zoë", "José", "Åsa", "Łukasz", "Chloé", "Søren", "Mónica", "Jürgen", "Anaïs", "李雷"]
_SURNAMES = ["Müller", "García", "Ødegaard", "Nowak", "Dubois", "Björk", "Ñúñez", "O'Brien"]
_BIOS = [
    "Likes data.",
    'Says "hello", often.',
    "Line one\nline two",
    "Café, crème brûlée\r\nand more",
    "",
]


def users_ddl(dialect: str, table: str = "users") -> str:
    """CREATE TABLE for the users table on `dialect` (postgresql or sqlite)."""
    timestamp = "timestamptz" if dialect == "postgresql" else "TIMESTAMP"
    return (
        f"CREATE TABLE {table} ("
        "id bigint PRIMARY KEY, "
        "email varchar(254) NOT NULL UNIQUE, "
        "name varchar(100) NOT NULL, "
        "age integer, "
        "score numeric(8,2), "
        "active boolean NOT NULL, "
        f"created_at {timestamp} NOT NULL, "
        "bio text)"
    )


def create_users_table(url: str, table: str = "users", *, replace: bool = False) -> None:
    """Create the users table in the database at `url`."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if replace:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(sa.text(users_ddl(engine.dialect.name, table)))
    engine.dispose()


@dataclass(frozen=True)
class Generated:
    """What a generated file holds, so tests and benchmarks can check exact counts.

    `invalid_lines` are the physical lines (header = line 1) where invalid rows start.
    """

    rows: int
    invalid: int
    duplicates: int
    invalid_lines: list[int]


def write_users_csv(
    path: Path,
    rows: int,
    *,
    invalid_rate: float = 0.0,
    duplicate_rate: float = 0.0,
    seed: int = 7,
) -> Generated:
    """Write `rows` data rows; a share of them invalid, another share repeating an email."""
    rng = random.Random(seed)
    duplicates = 0
    invalid_lines: list[int] = []
    emails: list[str] = []
    line = 2
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(COLUMNS) + "\n")
        for number in range(1, rows + 1):
            row = _valid_row(rng, number)
            draw = rng.random()
            if draw < invalid_rate:
                row = _invalid_row(rng, row)
                invalid_lines.append(line)
            elif draw < invalid_rate + duplicate_rate and emails:
                row[1] = rng.choice(emails)
                duplicates += 1
            else:
                emails.append(row[1])
            writer.writerow(row)
            text = buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            handle.write(text)
            line += text.count("\n")
    return Generated(
        rows=rows, invalid=len(invalid_lines), duplicates=duplicates, invalid_lines=invalid_lines
    )


def _valid_row(rng: random.Random, number: int) -> list[str]:
    first, last = rng.choice(_NAMES), rng.choice(_SURNAMES)
    return [
        str(number),
        f"user{number}@example.com",
        f"{first} {last}",
        str(rng.randint(18, 95)),
        f"{rng.randint(0, 99999)}.{rng.randint(0, 99):02d}",
        rng.choice(["true", "false"]),
        f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
        rng.choice(_BIOS),
    ]


def _invalid_row(rng: random.Random, row: list[str]) -> list[str]:
    fault = rng.randrange(6)
    if fault == 0:
        row[3] = "12.5"  # not an integer
    elif fault == 1:
        row[1] = "not-an-email"  # breaks rules.email.format
    elif fault == 2:
        row[6] = "2024-13-45 25:61"  # not a timestamp
    elif fault == 3:
        row[2] = "x" * 101  # longer than varchar(100)
    elif fault == 4:
        row[5] = ""  # NULL in a NOT NULL column
    else:
        row.append("surplus")  # wrong number of fields
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--invalid-rate", type=float, default=0.02)
    parser.add_argument("--duplicate-rate", type=float, default=0.01)
    args = parser.parse_args()
    made = write_users_csv(
        args.path, args.rows, invalid_rate=args.invalid_rate, duplicate_rate=args.duplicate_rate
    )
    print(f"{args.path}: {made.rows} rows, {made.invalid} invalid, {made.duplicates} repeats")


if __name__ == "__main__":
    main()
