#!/usr/bin/env python3
"""Times keyshift's KPI SQL in DuckDB over the same Parquet files.

    python3 -m venv target/duckdb && target/duckdb/bin/pip install duckdb==2.0.1
    target/release/keyshift bench kpis --data-dir target/kpi-bench --emit-sql target/kpi-sql
    target/duckdb/bin/python scripts/bench-kpis-duckdb.py target/kpi-bench target/kpi-sql

`keyshift bench kpis --emit-sql DIR` writes the statements of one report:
`_a.sql`, `_c.sql`, `_q.sql` and `_u.sql` (the shared tables, created first as
temporary tables)
and one file per KPI. DuckDB reads the table's data files directly (the
bench table is append-only, so every file under `event_date=*/` is live);
its SQL differs from DataFusion's in two expressions, translated below.
Prints the cold run (first after connecting) and warm runs, in ms.
"""
import pathlib
import re
import sys
import time

import duckdb

DUCKDB_VERSION = "2.0.1"


UNITS = {"1 hour": "hour", "1 day": "day", "7 days": "week"}


def translate(sql: str) -> str:
    # DataFusion's to_timestamp_micros(N) → DuckDB's timestamp with time zone.
    sql = re.sub(r"to_timestamp_micros\((\d+)\)", r"make_timestamp(\1::BIGINT)::TIMESTAMPTZ", sql)
    # keyshift's interval start (date_bin from a Monday, cast back to
    # microseconds) → DuckDB's own date_trunc, the same buckets in UTC.
    return re.sub(
        r"arrow_cast\(date_bin\(INTERVAL '([^']+)', occurred_at, TIMESTAMP '[^']+'\),\s*'[^']+'\)",
        lambda m: f"date_trunc('{UNITS[m.group(1)]}', occurred_at)",
        sql,
    )


def run(con, sql_dir: pathlib.Path) -> dict:
    times = {}
    for f in sorted(sql_dir.glob("_*.sql")):
        t0 = time.perf_counter()
        con.execute(f"CREATE OR REPLACE TEMP TABLE {f.stem[1:]} AS {translate(f.read_text())}")
        times[f.stem] = time.perf_counter() - t0
    for f in sorted(sql_dir.glob("[!_]*.sql")):
        t0 = time.perf_counter()
        con.execute(translate(f.read_text())).fetchall()
        times[f.stem] = time.perf_counter() - t0
    return times


def main() -> None:
    data_dir, sql_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    assert duckdb.__version__ == DUCKDB_VERSION, f"pin duckdb=={DUCKDB_VERSION}"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 2")
    files = data_dir / "tables" / "auth_events" / "event_date=*" / "*.parquet"
    con.execute(
        f"CREATE VIEW auth_events AS SELECT * FROM read_parquet('{files}', hive_partitioning = true)"
    )
    cold = run(con, sql_dir)
    warm = [run(con, sql_dir) for _ in range(rounds)]
    print(f"duckdb {duckdb.__version__}, {len(cold)} statements")
    for name in cold:
        w = " / ".join(f"{r[name] * 1000:.0f}" for r in warm)
        print(f"  {name:28s} cold {cold[name] * 1000:6.0f} ms  warm {w} ms")
    total = lambda r: sum(r.values()) * 1000
    print(f"total: cold {total(cold):.0f} ms, warm " + " / ".join(f"{total(r):.0f}" for r in warm) + " ms")


if __name__ == "__main__":
    main()
