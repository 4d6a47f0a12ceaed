"""Benchmark import-csv against `psql \\copy` (the physical limit) and pandas.to_sql.

One run, same machine, same table schema and constraints:
- baseline: `psql \\copy` of a clean 1,000,000-row users file into an empty table;
- import-csv: the same number of rows with 2 % invalid rows, 1 % repeated emails, quoted
  multi-line values and non-ASCII text, into an empty table, in a worker-like child process
  talking to a real Prefect server (started before the clock), at the defaults (automatic
  chunk sizes), or with each `--chunk-size` given (`auto` or a number of rows); its counts
  must match what the generator wrote, exactly;
- pandas: `read_csv` + `to_sql` of the clean file, for comparison (1M rows only).
Baseline and import alternate for `--repeat` rounds (default 3; on this machine one round's
ratio moves by up to 30 %); the ratio printed is the median of the rounds' ratios, each
pairing two runs minutes apart. Prints rows/s, the ratios and the worker's peak RSS (the
highest of the rounds); writes bench/out/import.json.

`--rows 10000000` (`make bench-10m`, not part of `make bench`: minutes of CPU and about 2.3 GB
of generated files) measures the 1M-row import and the 10M-row one in the same run and
prints how the ratio and the peak RSS moved (targets: within 10 %) and how each side's time
per row moved; the 10M pair alternates for as many rounds as the 1M one (one 10M `psql
\\copy` alone took 58 to 76 s on one machine within an hour, so a single round decided the
band); bench/out/import_10m.json.
The ratio uses the flow's own time, from its first line to its summary (`seconds` in its
result); the time of the whole call, which adds Prefect's flow-run set-up and tear-down
(the heartbeat thread's join alone can take 1 s), is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

from bench.support import (
    OUT,
    listed,
    prefect_server,
    psql,
    run_child,
    throwaway_database,
    timed,
)
from samples.users import create_users_table, write_users_csv

ROWS = 1_000_000
AUTO = "auto"
RATIO_TARGET = 0.6
RSS_TARGET_MB = 400
SCALE_TOLERANCE = 0.10
REPEAT = 3


def files(rows: int) -> tuple[Path, Path]:
    """The dirty and the clean users file of `rows` rows (generated once, then reused)."""
    dirty, clean = OUT / f"users_{rows}.csv", OUT / f"users_{rows}_clean.csv"
    counts = dirty.with_suffix(".counts.json")
    written = False
    if not dirty.exists() or not counts.exists():
        generated = write_users_csv(dirty, rows, invalid_rate=0.02, duplicate_rate=0.01)
        counts.write_text(
            json.dumps({"invalid": generated.invalid, "duplicates": generated.duplicates})
        )
        written = True
    if not clean.exists():
        write_users_csv(clean, rows)
        written = True
    if written:
        # Write the new files out now: the kernel's writeback (30 s later; 2.1 GB at 10M
        # rows) would otherwise run during the first timed run.
        os.sync()
    return dirty, clean


def expected_counts(rows: int) -> dict[str, int]:
    """What importing the dirty file must report: every invalid row failed, every repeat
    skipped, the rest inserted."""
    counts = json.loads((OUT / f"users_{rows}.counts.json").read_text())
    invalid, duplicates = int(counts["invalid"]), int(counts["duplicates"])
    return {
        "inserted": rows - invalid - duplicates,
        "updated": 0,
        "skipped": duplicates,
        "failed": invalid,
    }


def child_import(source: str, url: str, table: str, chunk_size: int | None) -> None:
    """Runs in the child: one import, then its call time, result and peak RSS as JSON."""
    from bench.support import peak_rss_mb  # noqa: PLC0415
    from flows.import_csv import import_csv  # noqa: PLC0415
    from samples.users import KEY, RULES  # noqa: PLC0415

    started = time.perf_counter()
    result = import_csv(
        source=source, table=table, key=KEY, rules=RULES, database=url, chunk_size=chunk_size
    )
    call_seconds = time.perf_counter() - started
    report = {
        "call_seconds": call_seconds,
        "chunk_seconds": _chunk_phase_seconds(url, result.import_id),
        "rss_mb": peak_rss_mb(),
        **result.model_dump(),
    }
    print(json.dumps(report))


def _chunk_phase_seconds(url: str, import_id: str) -> float:
    """From the import's registration (the end of planning) to its finish, by the ledger's
    clock: the flow's time less the planning pass and the flow's own set-up."""
    import sqlalchemy as sa  # noqa: PLC0415

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        seconds = conn.execute(
            sa.text(
                "SELECT extract(epoch FROM finished_at - started_at) "
                "FROM batchflows_imports WHERE import_id = :id"
            ),
            {"id": import_id},
        ).scalar_one()
    engine.dispose()
    return float(seconds)


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


def _size(value: str) -> int | None:
    return None if value == AUTO else int(value)


def measure(
    rows: int,
    chunk_sizes: list[int | None],
    url: str,
    env: dict[str, str],
    *,
    pandas: bool,
    repeat: int = 1,
) -> dict[str, Any]:
    """`repeat` rounds of psql \\copy of the clean file, then import-csv of the dirty one per
    chunk size; each round's ratio pairs the two measured minutes apart, and the report keeps
    every round and the medians (one round on this machine moves by up to 30 %)."""
    dirty, clean = files(rows)
    expected = expected_counts(rows)
    checkpoint = psql(url, "CHECKPOINT")
    copies: list[float] = []
    rounds: dict[str, list[dict[str, Any]]] = {
        AUTO if s is None else str(s): [] for s in chunk_sizes
    }
    for number in range(repeat):
        baseline = f"users_copy_{rows}"
        create_users_table(url, baseline, replace=True)
        timed(checkpoint)
        copies.append(timed(psql(url, f"\\copy {baseline} from '{clean.resolve()}' csv header")))
        timed(psql(url, f"DROP TABLE {baseline}"))
        for size in chunk_sizes:
            name = AUTO if size is None else str(size)
            table = f"users_{rows}_{name}"
            create_users_table(url, table, replace=True)
            timed(checkpoint)
            ours = run_child(
                "bench.bench_import",
                *("--child", "import", "--source", str(dirty.resolve()), "--url", url),
                *("--table", table, "--chunk-size", name),
                env=env,
            )
            counts = {k: ours[k] for k in expected}
            if counts != expected:
                raise AssertionError(f"{rows:,} rows, chunk_size {name}: {counts} != {expected}")
            timed(psql(url, f"DROP TABLE {table}"))
            rounds[name].append({**ours, "ratio": copies[number] / ours["seconds"]})
    imports = {name: _summary(rows, runs, expected) for name, runs in rounds.items()}
    report: dict[str, Any] = {
        "rows": rows,
        "file_mb": dirty.stat().st_size / 1e6,
        "psql_copy": {
            "seconds": median(copies),
            "rounds": [round(c, 2) for c in copies],
            "rows_per_second": rows / median(copies),
        },
        "import_csv": imports,
    }
    if pandas:
        create_users_table(url, "users_pandas")
        timed(checkpoint)
        result = run_child(
            "bench.bench_import",
            *("--child", "pandas", "--source", str(clean.resolve()), "--url", url),
            env=env,
        )
        report["pandas_to_sql"] = {
            "seconds": result["seconds"],
            "rows_per_second": rows / result["seconds"],
            "peak_rss_mb": result["rss_mb"],
        }
    return report


def _summary(rows: int, runs: list[dict[str, Any]], expected: dict[str, int]) -> dict[str, Any]:
    """One chunk size's medians over the rounds; each round's ratio pairs its own baseline."""
    seconds = median(r["seconds"] for r in runs)
    return {
        "seconds": seconds,
        "call_seconds": median(r["call_seconds"] for r in runs),
        "chunk_seconds": median(r["chunk_seconds"] for r in runs),
        "rows_per_second": rows / seconds,
        "ratio_to_psql_copy": median(r["ratio"] for r in runs),
        "ratios": [round(r["ratio"], 3) for r in runs],
        "peak_rss_mb": max(r["rss_mb"] for r in runs),
        "chunks": runs[0]["chunks"],
        "counts": {k: runs[0][k] for k in expected},
    }


def show(report: dict[str, Any]) -> None:
    """Print one measure() report."""
    rows = report["rows"]
    copy_seconds = report["psql_copy"]["seconds"]
    print(f"import of {rows:,} users rows ({report['file_mb']:,.0f} MB) into PostgreSQL")
    copies = listed(report["psql_copy"]["rounds"], " s")
    _line("psql \\copy (clean file)", rows, copy_seconds, f"median of rounds {copies}")
    for name, ours in report["import_csv"].items():
        ratios = listed(ours["ratios"])
        _line(
            f"import-csv chunk_size={name}",
            rows,
            ours["seconds"],
            f"ratio {ours['ratio_to_psql_copy']:.2f}x median of rounds {ratios} "
            f"(target >= {RATIO_TARGET:.2f}x), "
            f"{ours['chunks']} chunks in {ours['chunk_seconds']:.2f} s after "
            f"{ours['seconds'] - ours['chunk_seconds']:.2f} s of planning, "
            f"whole call {ours['call_seconds']:.2f} s, "
            f"peak RSS {ours['peak_rss_mb']:.0f} MB (target < {RSS_TARGET_MB}), counts exact",
        )
    if "pandas_to_sql" in report:
        pandas = report["pandas_to_sql"]
        _line(
            "pandas.to_sql (clean file)",
            rows,
            pandas["seconds"],
            f"peak RSS {pandas['peak_rss_mb']:.0f} MB",
        )


def compare(small: dict[str, Any], large: dict[str, Any]) -> dict[str, float]:
    """How the ratio and the peak RSS of the default import moved from `small` to `large`."""
    before, after = small["import_csv"][AUTO], large["import_csv"][AUTO]
    per_row = large["rows"] / small["rows"]
    moved = {
        "ratio_change": after["ratio_to_psql_copy"] / before["ratio_to_psql_copy"] - 1,
        "rss_change": after["peak_rss_mb"] / before["peak_rss_mb"] - 1,
        "import_time_per_row_change": after["seconds"] / before["seconds"] / per_row - 1,
        "chunk_phase_time_per_row_change": (
            after["chunk_seconds"] / before["chunk_seconds"] / per_row - 1
        ),
        "copy_time_per_row_change": (
            large["psql_copy"]["seconds"] / small["psql_copy"]["seconds"] / per_row - 1
        ),
    }
    print(
        f"{large['rows']:,} vs {small['rows']:,} rows at the defaults: ratio "
        f"{moved['ratio_change']:+.1%}, peak RSS {moved['rss_change']:+.1%} "
        f"(targets within {SCALE_TOLERANCE:.0%}); time per row: import-csv "
        f"{moved['import_time_per_row_change']:+.1%} (its chunks alone, after the planning: "
        f"{moved['chunk_phase_time_per_row_change']:+.1%}), "
        f"psql \\copy {moved['copy_time_per_row_change']:+.1%}"
    )
    return moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--child", choices=["import", "pandas"])
    parser.add_argument("--source")
    parser.add_argument("--url")
    parser.add_argument("--table", default="users")
    parser.add_argument("--chunk-size", action="append", help="rows per chunk, or auto")
    parser.add_argument(
        "--repeat", type=int, default=REPEAT, help="rounds of each baseline and import"
    )
    args = parser.parse_args()
    chunk_sizes = [_size(value) for value in args.chunk_size or [AUTO]]
    if args.child == "import":
        child_import(args.source, args.url, args.table, chunk_sizes[0])
        return
    if args.child == "pandas":
        child_pandas(args.source, args.url)
        return

    OUT.mkdir(parents=True, exist_ok=True)
    with throwaway_database("batchflows_bench_import") as url, prefect_server() as env:
        if args.rows == ROWS:
            report = measure(ROWS, chunk_sizes, url, env, pandas=True, repeat=args.repeat)
            (OUT / "import.json").write_text(json.dumps(report, indent=2))
            show(report)
        else:
            if None not in chunk_sizes:
                chunk_sizes.insert(0, None)
            small = measure(ROWS, chunk_sizes, url, env, pandas=False, repeat=args.repeat)
            show(small)
            large = measure(args.rows, chunk_sizes, url, env, pandas=False, repeat=args.repeat)
            show(large)
            moved = compare(small, large)
            name = f"import_{args.rows // 1_000_000}m.json"
            (OUT / name).write_text(json.dumps({"small": small, "large": large, **moved}, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
