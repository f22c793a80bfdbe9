"""Validation throughput: ``python -m pipelines.validation.bench --rows 1000000 [--table orders]``.

Fills a throw-away DuckDB file with generated raw rows (valid by construction, shaped like the sample brand)
and times ``validate_table`` on it: read into pandas + the whole GX suite of config/expectations.yml.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import duckdb

from identity.connection import connect
from pipelines.ingest.load import ensure_schema
from pipelines.settings import REPO_ROOT

from .config import load_config

_ID = "substr(replace(md5(i::varchar || '{salt}'), '-', ''), 1, 26)"

GENERATORS = {
    "orders": f"""
        INSERT INTO raw.orders
        SELECT 'miniprogram_shop/' || i, 'miniprogram_shop', i::varchar, 'wxmp0000000demo01',
               'oh' || {_ID.format(salt='o')}, 'om' || {_ID.format(salt='u')}, NULL,
               '13' || lpad((i % 1000000000)::varchar, 9, '0'), '张三',
               '13' || lpad((i % 999999937)::varchar, 9, '0'),
               CASE i % 5 WHEN 0 THEN 'unpaid' WHEN 1 THEN 'paid' WHEN 2 THEN 'partially_refunded'
                          WHEN 3 THEN 'refunded' ELSE 'cancelled' END, 'PAID',
               (i % 50000) / 100.0, CASE i % 5 WHEN 3 THEN (i % 50000) / 100.0 WHEN 2 THEN (i % 50000) / 200.0
                                        ELSE 0 END,
               TIMESTAMP '2025-01-01' + to_seconds(i % 31000000),
               TIMESTAMP '2025-01-01' + to_seconds(i % 31000000 + 60),
               'orders_miniprogram/bench.csv', 'bench', i, 'miniprogram_shop_orders_csv', now()::timestamp
        FROM range({{rows}}) t(i)
    """,
    "mp_logins": f"""
        INSERT INTO raw.mp_logins
        SELECT i::varchar, i::varchar, 'wxmp0000000demo01', 'oh' || {_ID.format(salt='o')},
               'om' || {_ID.format(salt='u')}, '13' || lpad((i % 1000000000)::varchar, 9, '0'),
               TIMESTAMP '2025-01-01' + to_seconds(i % 31000000),
               'mp_logins/bench.csv', 'bench', i, 'mp_login_csv', now()::timestamp
        FROM range({{rows}}) t(i)
    """,
}


def generate(con: duckdb.DuckDBPyConnection, table: str, rows: int) -> None:
    ensure_schema(con)
    con.execute(GENERATORS[table].format(rows=rows))


def main(argv: list[str] | None = None) -> int:
    from .validate import validate_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--table", choices=sorted(GENERATORS), default="orders")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "config" / "expectations.yml")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        con = connect(str(Path(tmp) / "bench.duckdb"))
        started = time.perf_counter()
        generate(con, args.table, args.rows)
        print(f"generated {args.rows:,} raw.{args.table} rows in {time.perf_counter() - started:.1f}s")
        validate_table(con, args.table, replace(config, max_rows=1))  # warm-up: GX import, first context
        cpu = time.process_time()
        result = validate_table(con, args.table, config)
        cpu = time.process_time() - cpu
        con.close()
    print(result.summary("error"))
    print(result.summary("warn"))
    print(
        f"validated {result.rows_validated:,} rows with {len(result.results)} expectations in {result.seconds:.1f}s: "
        f"{result.rows_per_second:,.0f} rows/s (wall clock); {cpu:.1f} CPU-s: {result.rows_validated / cpu:,.0f} rows per "
        f"CPU-second ({os.getloadavg()[0]:.1f} load average)"
    )
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
