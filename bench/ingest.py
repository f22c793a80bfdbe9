"""Ingest throughput: N fake order rows per source, loaded into a fresh DuckDB file.

    .venv/bin/python bench/ingest.py --rows 1000000

Writes a mini-program shop CSV (UTF-8, amounts in fen) and a Taobao report (GBK, Chinese headers,
amounts in yuan) into a temp landing folder, then loads each in its own child process so that the
peak RSS printed is that source's alone (polars allocates outside Python: tracemalloc cannot see it).
Time covers everything ingest does for the file: read, hash, decode, parse, validate, insert, commit.
Each source runs three times: into a DuckDB file (what production does), into an in-memory DuckDB
(no compression or disk), and with no database at all (ingest's own work, split by stage).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MP_FOLDER = "orders_miniprogram"
TB_FOLDER = "orders_taobao"


def generate(landing: Path, rows: int, seed: int = 7) -> dict[str, Path]:
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    base = 1_704_038_400  # 2024-01-01 00:00:00 +08:00
    created = base + rng.integers(0, 365 * 86400, rows)
    paid_delay = rng.integers(10, 600, rows)
    amount_fen = rng.integers(100, 200_000, rows)
    status_idx = rng.choice(7, rows, p=[0.03, 0.3, 0.2, 0.35, 0.05, 0.03, 0.04])
    mp_words = np.array(["WAIT_PAY", "PAID", "SHIPPED", "COMPLETED", "REFUNDED", "PARTIAL_REFUND", "CANCELLED"])
    unpaid = (status_idx == 0) | (status_idx == 6)
    refund_fen = np.where(status_idx == 4, amount_fen, np.where(status_idx == 5, amount_fen // 3, 0))
    ids = np.arange(rows)

    def fmt(ts: np.ndarray) -> pl.Series:
        # Shanghai wall time without a tz library: UTC+8, no DST since 1991.
        return pl.from_epoch(pl.Series(ts + 8 * 3600), time_unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")

    created_s = fmt(created)
    paid_s = fmt(created + paid_delay).zip_with(pl.Series(~unpaid), pl.Series([""] * rows))
    phones = pl.Series((13_800_000_000 + rng.integers(0, 99_999_999, rows)).astype(str))

    mp = pl.DataFrame({
        "order_id": pl.Series(ids).cast(pl.String).str.zfill(12),
        "appid": "wxmp0000000demo01",
        "openid": "oFAKE" + pl.Series(rng.integers(0, rows // 3 + 1, rows)).cast(pl.String).str.zfill(10),
        "unionid": "",
        "buyer_phone": phones,
        "receiver_name": "测试收货人",
        "receiver_phone": phones,
        "order_status": mp_words[status_idx],
        "pay_amount_fen": pl.Series(np.where(unpaid, 0, amount_fen)).cast(pl.String),
        "refund_amount_fen": pl.Series(refund_fen).cast(pl.String),
        "created_at": created_s,
        "paid_at": paid_s,
    })
    tb_words = np.array(["等待买家付款", "买家已付款，等待卖家发货", "卖家已发货，等待买家确认", "交易成功", "交易关闭", "交易成功", "交易关闭"])
    yuan = lambda fen: pl.Series(fen // 100).cast(pl.String) + "." + pl.Series(fen % 100).cast(pl.String).str.zfill(2)  # noqa: E731
    tb = pl.DataFrame({
        "订单编号": pl.Series(3_000_000_000_000_000_000 + ids).cast(pl.String),
        "买家会员名": "测试买家" + pl.Series(rng.integers(0, rows // 3 + 1, rows)).cast(pl.String),
        "买家实际支付金额": yuan(np.where(unpaid, 0, amount_fen)),
        "订单状态": tb_words[status_idx],
        "收货人姓名": "测试收货人",
        "联系手机": phones.str.slice(0, 3) + "****" + phones.str.slice(7),
        "订单创建时间": created_s,
        "订单付款时间": paid_s,
        "退款金额": yuan(refund_fen),
    })
    (landing / MP_FOLDER).mkdir(parents=True)
    (landing / TB_FOLDER).mkdir(parents=True)
    mp_path = landing / MP_FOLDER / "orders.csv"
    tb_path = landing / TB_FOLDER / "ExportOrderList.csv"
    mp.write_csv(mp_path)
    tb_path.write_bytes(tb.write_csv().replace("\n", "\r\n").encode("gbk"))
    return {MP_FOLDER: mp_path, TB_FOLDER: tb_path}


def run_stages(landing: Path, folder_name: str) -> dict:
    """Ingest's own work without any database: read + hash, decode + parse, type + validate."""
    import hashlib

    from pipelines.ingest.config import load_config
    from pipelines.ingest.load import CHUNK_ROWS, discover_files, parse_file
    from pipelines.ingest.transform import transform

    config = load_config(ROOT / "config")
    folder = config.folders[folder_name]
    [path] = discover_files(landing, folder)
    t0 = time.perf_counter()
    data = path.read_bytes()
    hashlib.sha256(data).hexdigest()
    t1 = time.perf_counter()
    read = parse_file(data, path.name, folder, config)
    del data
    t2 = time.perf_counter()
    rows = 0
    for offset in range(0, read.frame.height, CHUNK_ROWS):
        rows += transform(read.frame.slice(offset, CHUNK_ROWS), read.layout, dict(folder.scope)).rows.height
    t3 = time.perf_counter()
    return {
        "folder": folder_name, "status": "loaded", "encoding": read.encoding, "rows_loaded": rows,
        "rows_quarantined": 0, "rows_in_table": rows, "bytes": path.stat().st_size, "seconds": t3 - t0,
        "stages": {"read+hash": t1 - t0, "decode+parse": t2 - t1, "type+validate": t3 - t2},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_one(landing: Path, folder_name: str, db: Path) -> dict:
    import duckdb

    from pipelines.ingest.config import load_config
    from pipelines.ingest.load import discover_files, ensure_schema, ingest_file

    if db.name == ":none:":
        return run_stages(landing, folder_name)
    config = load_config(ROOT / "config")
    folder = config.folders[folder_name]
    # ":memory:" isolates ingest's own work from DuckDB's compression and disk writes.
    con = duckdb.connect(str(db) if db.name != ":memory:" else ":memory:")
    ensure_schema(con)
    [path] = discover_files(landing, folder)
    t0 = time.perf_counter()
    result = ingest_file(con, path, landing, folder, config)
    seconds = time.perf_counter() - t0
    table_rows = con.execute(f"SELECT count(*) FROM raw.{folder.source} WHERE _source_file = ?", [result.path]).fetchone()[0]
    con.close()
    return {
        "folder": folder_name,
        "status": result.status,
        "encoding": result.encoding,
        "rows_loaded": result.rows_loaded,
        "rows_quarantined": result.rows_quarantined,
        "rows_in_table": table_rows,
        "bytes": path.stat().st_size,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="order rows per source (default %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder and print its path")
    ap.add_argument("--child", nargs=3, metavar=("LANDING", "FOLDER", "DB"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        landing, folder, db = args.child
        print(json.dumps(run_one(Path(landing), folder, Path(db))))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="oneid-bench-"))
    landing = tmp / "landing"
    t0 = time.perf_counter()
    generate(landing, args.rows)
    print(f"generated {args.rows:,} rows per source in {time.perf_counter() - t0:.1f}s under {tmp}")
    ok = True
    for folder in (MP_FOLDER, TB_FOLDER):
        for target in ("file", "memory", "none"):
            db = {"file": tmp / f"{folder}.duckdb", "memory": Path(":memory:"), "none": Path(":none:")}[target]
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(landing), folder, str(db)],
                check=True, capture_output=True, text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rate = r["rows_loaded"] / r["seconds"] if r["seconds"] else float("inf")
            print(
                f"{folder:<20} {target:<6} DB  {r['status']:<8} {r['encoding'] or '-':<8} {r['rows_loaded']:>10,} rows "
                f"({r['bytes'] / 1e6:,.0f} MB) in {r['seconds']:6.2f}s = {rate:>10,.0f} rows/s, "
                f"peak RSS {r['peak_rss_mb']:,.0f} MB"
                + ("  [" + ", ".join(f"{k} {v:.2f}s" for k, v in r["stages"].items()) + "]" if "stages" in r else "")
            )
            ok &= r["status"] == "loaded" and r["rows_loaded"] == args.rows == r["rows_in_table"]
    if not args.keep:
        import shutil

        shutil.rmtree(tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
