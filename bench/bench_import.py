"""Benchmark import-csv against `psql \\copy` (the physical limit) and pandas.to_sql.

One run, same machine, same table schema and constraints:
- baseline: `psql \\copy` of a clean 1,000,000-row users file into an empty table;
- import-csv: the same number of rows with 2 % invalid rows, 1 % repeated emails, quoted
  multi-line values and non-ASCII text, into an empty table, in a worker-like child process
  talking to a real Prefect server (started before the clock), once with the default
  chunk_size (10,000: 100 task runs) and once with larger chunks (fewer task runs for the
  Prefect server to record, which shares the two cores with PostgreSQL here);
- pandas: `read_csv` + `to_sql` of the clean file, for comparison.
Prints rows/s, the ratio to the baseline and the worker's peak RSS; writes bench/out/import.json.
The ratio uses the flow's own time, from its first line to its summary (`seconds` in its
result); the time of the whole call, which adds Prefect's flow-run set-up and tear-down
(the heartbeat thread's join alone can take 1 s), is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.support import OUT, prefect_server, psql, run_child, throwaway_database, timed
from samples.users import create_users_table, write_users_csv

ROWS = 1_000_000
CHUNK_SIZES = (10_000, 25_000)


def files(rows: int) -> tuple[Path, Path]:
    """The dirty and the clean users file of `rows` rows (generated once, then reused)."""
    dirty, clean = OUT / f"users_{rows}.csv", OUT / f"users_{rows}_clean.csv"
    if not dirty.exists():
        write_users_csv(dirty, rows, invalid_rate=0.02, duplicate_rate=0.01)
    if not clean.exists():
        write_users_csv(clean, rows)
    return dirty, clean


def child_import(source: str, url: str, table: str, chunk_size: int) -> None:
    """Runs in the child: one import, then its call time, result and peak RSS as JSON."""
    from bench.support import peak_rss_mb  # noqa: PLC0415
    from flows.import_csv import import_csv  # noqa: PLC0415
    from samples.users import KEY, RULES  # noqa: PLC0415

    started = time.perf_counter()
    result = import_csv(
        source=source, table=table, key=KEY, rules=RULES, database=url, chunk_size=chunk_size
    )
    call_seconds = time.perf_counter() - started
    report = {"call_seconds": call_seconds, "rss_mb": peak_rss_mb(), **result.model_dump()}
    print(json.dumps(report))


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
    print(f"  {label:<34} {rows / seconds:>10,.0f} rows/s {seconds:7.2f} s  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--child", choices=["import", "pandas"])
    parser.add_argument("--source")
    parser.add_argument("--url")
    parser.add_argument("--table", default="users")
    parser.add_argument("--chunk-size", type=int, action="append")
    args = parser.parse_args()
    chunk_sizes = args.chunk_size or list(CHUNK_SIZES)
    if args.child == "import":
        child_import(args.source, args.url, args.table, chunk_sizes[0])
        return
    if args.child == "pandas":
        child_pandas(args.source, args.url)
        return

    dirty, clean = files(args.rows)
    imports: dict[int, dict[str, Any]] = {}
    with throwaway_database("batchflows_bench_import") as url, prefect_server() as env:
        checkpoint = psql(url, "CHECKPOINT")
        create_users_table(url, "users_copy")
        timed(checkpoint)
        copy_seconds = timed(psql(url, f"\\copy users_copy from '{clean.resolve()}' csv header"))
        for size in chunk_sizes:
            table = f"users_{size}"
            create_users_table(url, table)
            timed(checkpoint)
            imports[size] = run_child(
                "bench.bench_import",
                *("--child", "import", "--source", str(dirty.resolve()), "--url", url),
                *("--table", table, "--chunk-size", str(size)),
                env=env,
            )
        create_users_table(url, "users_pandas")
        timed(checkpoint)
        pandas = run_child(
            "bench.bench_import",
            *("--child", "pandas", "--source", str(clean.resolve()), "--url", url),
            env=env,
        )
    rows = args.rows
    report: dict[str, Any] = {
        "rows": rows,
        "psql_copy": {"seconds": copy_seconds, "rows_per_second": rows / copy_seconds},
        "import_csv": {
            str(size): {
                "seconds": ours["seconds"],
                "call_seconds": ours["call_seconds"],
                "rows_per_second": rows / ours["seconds"],
                "ratio_to_psql_copy": copy_seconds / ours["seconds"],
                "peak_rss_mb": ours["rss_mb"],
                "counts": {k: ours[k] for k in ("inserted", "updated", "skipped", "failed")},
            }
            for size, ours in imports.items()
        },
        "pandas_to_sql": {
            "seconds": pandas["seconds"],
            "rows_per_second": rows / pandas["seconds"],
            "peak_rss_mb": pandas["rss_mb"],
        },
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "import.json").write_text(json.dumps(report, indent=2))
    print(f"import of {rows:,} users rows into PostgreSQL (same schema and constraints)")
    _line("psql \\copy (clean file)", rows, copy_seconds, "")
    for size, ours in imports.items():
        _line(
            f"import-csv chunk_size={size:,}",
            rows,
            ours["seconds"],
            f"ratio {copy_seconds / ours['seconds']:.2f}x (target >= 0.50x), "
            f"whole call {ours['call_seconds']:.2f} s, "
            f"peak RSS {ours['rss_mb']:.0f} MB (target < 400)",
        )
    _line(
        "pandas.to_sql (clean file)", rows, pandas["seconds"], f"peak RSS {pandas['rss_mb']:.0f} MB"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
