"""Benchmark export-table against `psql \\copy | gzip -6` (csv) and an ADBC-to-parquet script.

One run, same machine, a 1,000,000-row users table in a throwaway PostgreSQL database (loaded
from the clean users file bench_import generates):
- csv + gzip: `psql -c "\\copy users to stdout csv header" | gzip -6` against export-table
  (format csv, gzip), which reads key ranges with COPY in parallel and compresses each into a
  gzip member on its own thread;
- parquet: a child that fetches the table with ADBC (adbc-driver-postgresql) and writes it with
  pyarrow's ParquetWriter, against export-table (format parquet).
export-table runs at its default `chunk_size` (rows per part) unless `--chunk-size` is given.
The flow runs in a worker-like child process talking to a real Prefect server (started before
the clock). The ratio uses the flow's own time (`seconds` in its result); the time of the
whole call, which adds Prefect's flow-run set-up and tear-down, is printed beside it.
Baselines and exports run `--repeat` rounds (default 3: one round's parquet ratio moved
from 0.72x to 1.01x on the same code, with the baseline); each round's ratio pairs it with
its own baseline and the median is printed beside every round's. Prints rows/s, ratios and
peak RSS (the highest of the rounds); writes bench/out/export.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import time
from statistics import median
from typing import Any, Literal

from bench.bench_import import files
from bench.support import (
    OUT,
    listed,
    prefect_server,
    psql,
    run_child,
    throwaway_database,
    timed,
)
from flows.export_table import PART_ROWS
from samples.users import create_users_table

ROWS = 1_000_000
REPEAT = 3
EXPORTS = OUT / "exports"


def child_export(url: str, file_format: Literal["csv", "parquet"], chunk_size: int) -> None:
    """Runs in the child: one export, then its call time, result and peak RSS as JSON."""
    from bench.support import peak_rss_mb  # noqa: PLC0415
    from flows.export_table import export_table  # noqa: PLC0415

    started = time.perf_counter()
    result = export_table(table="users", format=file_format, database=url, chunk_size=chunk_size)
    call_seconds = time.perf_counter() - started
    report = {"call_seconds": call_seconds, "rss_mb": peak_rss_mb(), **result.model_dump()}
    print(json.dumps(report, default=str))


def child_adbc(url: str, target: str) -> None:
    """Runs in the child: the baseline, ADBC fetch of the table written to parquet."""
    import adbc_driver_postgresql.dbapi as adbc  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415
    import sqlalchemy as sa  # noqa: PLC0415

    from bench.support import peak_rss_mb  # noqa: PLC0415

    uri = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    started = time.perf_counter()
    rows = 0
    with adbc.connect(uri) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT * FROM users")
        reader = cursor.fetch_record_batch()
        with pq.ParquetWriter(target, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rss_mb": peak_rss_mb(), "rows": rows}))


def _summary(rows: int, file_format: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One format's medians over the rounds; each round's ratio pairs its own baseline."""
    ours = [r["ours"][file_format] for r in rounds]
    ratios = [r[file_format] / o["seconds"] for r, o in zip(rounds, ours, strict=True)]
    seconds = median(o["seconds"] for o in ours)
    return {
        "seconds": seconds,
        "call_seconds": median(o["call_seconds"] for o in ours),
        "rows": ours[0]["rows"],
        "bytes": ours[0]["bytes"],
        "parts": ours[0]["parts"],
        "rows_per_second": rows / seconds,
        "ratio_to_baseline": median(ratios),
        "ratios": [round(r, 3) for r in ratios],
        "ratio_whole_call": median(
            r[file_format] / o["call_seconds"] for r, o in zip(rounds, ours, strict=True)
        ),
        "peak_rss_mb": max(o["rss_mb"] for o in ours),
    }


def _line(label: str, rows: int, seconds: float, note: str = "") -> None:
    print(f"  {label:<40} {rows / seconds:>10,.0f} rows/s {seconds:7.2f} s  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--chunk-size", type=int, default=PART_ROWS)
    parser.add_argument("--child", choices=["export", "adbc"])
    parser.add_argument("--url")
    parser.add_argument("--format", default="csv", choices=["csv", "parquet"])
    parser.add_argument("--target")
    parser.add_argument(
        "--repeat", type=int, default=REPEAT, help="rounds of baselines and exports"
    )
    args = parser.parse_args()
    if args.child == "export":
        child_export(args.url, args.format, args.chunk_size)
        return
    if args.child == "adbc":
        child_adbc(args.url, args.target)
        return

    _, clean = files(args.rows)
    shutil.rmtree(EXPORTS, ignore_errors=True)
    EXPORTS.mkdir(parents=True)
    with throwaway_database("batchflows_bench_export") as url, prefect_server() as env:
        create_users_table(url)
        timed(psql(url, f"\\copy users from '{clean.resolve()}' csv header"))
        timed(psql(url, "VACUUM ANALYZE users", "CHECKPOINT"))
        baseline_csv = EXPORTS / "baseline.csv.gz"
        copy_out = shlex.join(psql(url, "\\copy users to stdout csv header"))
        pipe = f"{copy_out} | gzip -6 > {shlex.quote(str(baseline_csv))}"
        timed(["bash", "-o", "pipefail", "-c", pipe])
        child_env = {**env, "BATCHFLOWS_EXPORTS_ROOT": str(EXPORTS.resolve())}
        rounds: list[dict[str, Any]] = []
        for _ in range(args.repeat):
            adbc = run_child(
                "bench.bench_export",
                *("--child", "adbc", "--url", url, "--target", str(EXPORTS / "baseline.parquet")),
                env=env,
            )
            ours = {
                file_format: run_child(
                    "bench.bench_export",
                    *("--child", "export", "--url", url, "--format", file_format),
                    *("--chunk-size", str(args.chunk_size)),
                    env=child_env,
                )
                for file_format in ("csv", "parquet")
            }
            psql_seconds = timed(["bash", "-o", "pipefail", "-c", pipe])
            rounds.append({"csv": psql_seconds, "parquet": float(adbc["seconds"]), "ours": ours})
    rows = args.rows
    baselines = {f: median(r[f] for r in rounds) for f in ("csv", "parquet")}
    report: dict[str, Any] = {
        "rows": rows,
        "chunk_size": args.chunk_size,
        "psql_copy_gzip": {
            "seconds": baselines["csv"],
            "rounds": [round(r["csv"], 2) for r in rounds],
            "rows_per_second": rows / baselines["csv"],
        },
        "adbc_parquet": {
            "seconds": baselines["parquet"],
            "rounds": [round(r["parquet"], 2) for r in rounds],
            "rows_per_second": rows / baselines["parquet"],
        },
        "export_table": {
            file_format: _summary(rows, file_format, rounds) for file_format in ("csv", "parquet")
        },
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "export.json").write_text(json.dumps(report, indent=2))
    print(f"export of {rows:,} users rows (chunk_size {args.chunk_size:,})")
    _line(
        "psql \\copy | gzip -6 (baseline)",
        rows,
        baselines["csv"],
        f"median of rounds {listed(report['psql_copy_gzip']['rounds'], ' s')}",
    )
    for file_format, label in (
        ("csv", "export-table csv+gzip"),
        ("parquet", "export-table parquet"),
    ):
        if file_format == "parquet":
            _line(
                "ADBC -> parquet (baseline)",
                rows,
                baselines["parquet"],
                f"median of rounds {listed(report['adbc_parquet']['rounds'], ' s')}",
            )
        result = report["export_table"][file_format]
        ratios = listed(result["ratios"])
        _line(
            label,
            rows,
            result["seconds"],
            f"ratio {result['ratio_to_baseline']:.2f}x median of rounds {ratios} (whole call "
            f"{result['call_seconds']:.2f} s, {result['ratio_whole_call']:.2f}x), peak RSS "
            f"{result['peak_rss_mb']:.0f} MB",
        )
    shutil.rmtree(EXPORTS, ignore_errors=True)


if __name__ == "__main__":
    main()
