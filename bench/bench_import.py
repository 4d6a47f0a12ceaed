"""Benchmark import-csv against `psql \\copy` (the physical limit) and pandas.to_sql.

One run, same machine, same table schema and constraints:
- baseline: `psql \\copy` of a clean 1,000,000-row users file into an empty table;
- import-csv: the same number of rows with 2 % invalid rows, 1 % repeated emails, quoted
  multi-line values and non-ASCII text, into an empty table, in a worker-like child process
  talking to a real Prefect server (started before the clock);
- pandas: `read_csv` + `to_sql` of the clean file, for comparison.
Prints rows/s, the ratio to the baseline and the worker's peak RSS; writes bench/out/import.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.generate import create_users_table, write_users_csv
from bench.support import OUT, prefect_server, psql, run_child, throwaway_database, timed

ROWS = 1_000_000


def files(rows: int) -> tuple[Path, Path]:
    """The dirty and the clean users file of `rows` rows (generated once, then reused)."""
    dirty, clean = OUT / f"users_{rows}.csv", OUT / f"users_{rows}_clean.csv"
    if not dirty.exists():
        write_users_csv(dirty, rows, invalid_rate=0.02, duplicate_rate=0.01)
    if not clean.exists():
        write_users_csv(clean, rows)
    return dirty, clean


def child_import(source: str, url: str) -> None:
    """Runs in the child: one import, then its duration, result and peak RSS as JSON."""
    from bench.generate import KEY, RULES  # noqa: PLC0415
    from bench.support import peak_rss_mb  # noqa: PLC0415
    from flows.import_csv import import_csv  # noqa: PLC0415

    started = time.perf_counter()
    result = import_csv(source=source, table="users", key=KEY, rules=RULES, database=url)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rss_mb": peak_rss_mb(), **result.model_dump()}))


def child_pandas(source: str, url: str) -> None:
    """Runs in the child: pandas read_csv + to_sql into users_pandas."""
    import pandas as pd  # noqa: PLC0415
    import sqlalchemy as sa  # noqa: PLC0415

    from bench.support import peak_rss_mb  # noqa: PLC0415

    engine = sa.create_engine(url)
    started = time.perf_counter()
    frame = pd.read_csv(source, parse_dates=["created_at"])
    frame.to_sql("users_pandas", engine, if_exists="append", index=False, chunksize=10_000)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rss_mb": peak_rss_mb(), "rows": len(frame)}))


def _line(label: str, rows: int, seconds: float, note: str) -> None:
    print(f"  {label:<28} {rows / seconds:>10,.0f} rows/s {seconds:7.2f} s  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--child", choices=["import", "pandas"])
    parser.add_argument("--source")
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.child == "import":
        child_import(args.source, args.url)
        return
    if args.child == "pandas":
        child_pandas(args.source, args.url)
        return

    dirty, clean = files(args.rows)
    with throwaway_database("batchflows_bench_import") as url, prefect_server() as env:
        for table in ("users", "users_copy", "users_pandas"):
            create_users_table(url, table)
        subprocess_checkpoint = psql(url, "CHECKPOINT")
        timed(subprocess_checkpoint)
        copy_seconds = timed(psql(url, f"\\copy users_copy from '{clean.resolve()}' csv header"))
        timed(subprocess_checkpoint)
        ours = run_child(
            "bench.bench_import",
            "--child",
            "import",
            "--source",
            str(dirty.resolve()),
            "--url",
            url,
            env=env,
        )
        timed(subprocess_checkpoint)
        pandas = run_child(
            "bench.bench_import",
            "--child",
            "pandas",
            "--source",
            str(clean.resolve()),
            "--url",
            url,
            env=env,
        )
    report = {
        "rows": args.rows,
        "psql_copy": {"seconds": copy_seconds, "rows_per_second": args.rows / copy_seconds},
        "import_csv": {
            "seconds": ours["seconds"],
            "rows_per_second": args.rows / ours["seconds"],
            "peak_rss_mb": ours["rss_mb"],
            "counts": {k: ours[k] for k in ("inserted", "updated", "skipped", "failed", "chunks")},
        },
        "pandas_to_sql": {
            "seconds": pandas["seconds"],
            "rows_per_second": args.rows / pandas["seconds"],
            "peak_rss_mb": pandas["rss_mb"],
        },
    }
    ratio = copy_seconds / ours["seconds"]
    report["ratio_to_psql_copy"] = ratio
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "import.json").write_text(json.dumps(report, indent=2))
    print(f"import of {args.rows:,} users rows into PostgreSQL (same schema and constraints)")
    _line("psql \\copy (clean file)", args.rows, copy_seconds, "")
    _line(
        "import-csv (2% bad, 1% dup)",
        args.rows,
        ours["seconds"],
        f"ratio {ratio:.2f}x (target >= 0.50x), peak RSS {ours['rss_mb']:.0f} MB (target < 400)",
    )
    _line(
        "pandas.to_sql (clean file)",
        args.rows,
        pandas["seconds"],
        f"peak RSS {pandas['rss_mb']:.0f} MB",
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
