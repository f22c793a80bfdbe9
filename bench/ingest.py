"""Ingest throughput and memory: N fake order rows per source, loaded into a fresh DuckDB file.

    .venv/bin/python bench/ingest.py --rows 1000000 4000000            # rows/s and peak RSS at two sizes
    .venv/bin/python bench/ingest.py --rows 1000000 --targets file,memory,none

Writes a mini-program shop CSV (UTF-8, amounts in fen) and a Taobao report (GBK, Chinese headers,
amounts in yuan) into a temp landing folder per size, then loads each in its own child process so that
the peak RSS printed is that load's alone (polars allocates outside Python: tracemalloc cannot see it).
Time covers everything ingest does for the file: hash, decode, parse, validate, insert, commit.
Targets: `file` a DuckDB file (what production does), `memory` an in-memory DuckDB (no compression or
disk), `none` no database at all (ingest's own work). CPU seconds (user + sys of the child) are printed
next to wall time: on a VM shared with other jobs, wall time says as much about the neighbours as about
ingest. Peak RSS should stay flat as the row count grows: files are streamed in bounded blocks.
"""

from __future__ import annotations

import argparse
import json
import os
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
    """Ingest's own work without any database: hash, then decode + parse + type + validate, streamed."""
    from pipelines.ingest.config import load_config
    from pipelines.ingest.load import CHUNK_ROWS, _sha256, discover_files, parse_file
    from pipelines.ingest.transform import transform

    config = load_config(ROOT / "config")
    folder = config.folders[folder_name]
    [path] = discover_files(landing, folder)
    cpu0 = _cpu()
    t0 = time.perf_counter()
    _sha256(path)
    t1 = time.perf_counter()
    read = parse_file(path, folder, config)
    rows = 0
    for batch in read.batches:
        for offset in range(0, batch.frame.height, CHUNK_ROWS):
            rows += transform(batch.frame.slice(offset, CHUNK_ROWS), read.layout, dict(folder.scope)).rows.height
    t2 = time.perf_counter()
    return {
        "folder": folder_name, "status": "loaded", "encoding": read.encoding, "rows_loaded": rows,
        "rows_quarantined": 0, "rows_in_table": rows, "bytes": path.stat().st_size, "seconds": t2 - t0,
        "stages": {"hash": t1 - t0, "decode+parse+type": t2 - t1}, "cpu_at_start": cpu0,
    }


def run_one(landing: Path, folder_name: str, db: Path) -> dict:
    from identity.connection import connect

    from pipelines.ingest.config import load_config
    from pipelines.ingest.load import discover_files, ensure_schema, ingest_file

    if db.name == ":none:":
        return _with_usage(run_stages(landing, folder_name))
    config = load_config(ROOT / "config")
    folder = config.folders[folder_name]
    # ":memory:" isolates ingest's own work from DuckDB's compression and disk writes.
    con = connect(str(db) if db.name != ":memory:" else ":memory:")
    ensure_schema(con)
    [path] = discover_files(landing, folder)
    cpu0 = _cpu()
    t0 = time.perf_counter()
    result = ingest_file(con, path, landing, folder, config)
    seconds = time.perf_counter() - t0
    table_rows = con.execute(f"SELECT count(*) FROM raw.{folder.source} WHERE _source_file = ?", [result.path]).fetchone()[0]
    con.close()
    out = {
        "folder": folder_name,
        "status": result.status,
        "encoding": result.encoding,
        "rows_loaded": result.rows_loaded,
        "rows_quarantined": result.rows_quarantined,
        "rows_in_table": table_rows,
        "bytes": path.stat().st_size,
        "seconds": seconds,
        "cpu_at_start": cpu0,
    }
    return _with_usage(out)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child of a parent that just generated
    # a 4M-row file would report the parent's peak. VmHWM belongs to this process image only.
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _with_usage(out: dict) -> dict:
    out["cpu_seconds"] = _cpu() - out.pop("cpu_at_start")
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000],
                    help="order rows per source; several sizes show whether memory stays flat (default %(default)s)")
    ap.add_argument("--targets", default="file", help="comma-separated: file, memory, none (default %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder and print its path")
    ap.add_argument("--child", nargs=3, metavar=("LANDING", "FOLDER", "DB"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        landing, folder, db = args.child
        print(json.dumps(run_one(Path(landing), folder, Path(db))))
        return 0

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not set(targets) <= {"file", "memory", "none"}:
        ap.error("--targets: file, memory, none")
    tmp = Path(tempfile.mkdtemp(prefix="oneid-bench-"))
    ok = True
    summary = []
    try:
        for n in args.rows:
            landing = tmp / f"landing_{n}"
            t0 = time.perf_counter()
            generate(landing, n)
            print(f"generated {n:,} rows per source in {time.perf_counter() - t0:.1f}s under {landing}", flush=True)
            for folder in (MP_FOLDER, TB_FOLDER):
                for target in targets:
                    db = {"file": tmp / f"{folder}_{n}.duckdb", "memory": Path(":memory:"), "none": Path(":none:")}[target]
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", str(landing), folder, str(db)],
                        check=True, capture_output=True, text=True,
                    )
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    rate = r["rows_loaded"] / r["seconds"] if r["seconds"] else float("inf")
                    print(
                        f"{folder:<20} {target:<6} DB  {r['status']:<8} {r['encoding'] or '-':<9} {r['rows_loaded']:>10,} rows "
                        f"({r['bytes'] / 1e6:,.0f} MB) in {r['seconds']:6.2f}s = {rate:>10,.0f} rows/s, "
                        f"{r['cpu_seconds']:6.2f} CPU s, peak RSS {r['peak_rss_mb']:,.0f} MB"
                        + ("  [" + ", ".join(f"{k} {v:.2f}s" for k, v in r["stages"].items()) + "]" if "stages" in r else ""),
                        flush=True,
                    )
                    summary.append((folder, target, n, rate, r["peak_rss_mb"]))
                    ok &= r["status"] == "loaded" and r["rows_loaded"] == n == r["rows_in_table"]
                    if target == "file":
                        db.unlink(missing_ok=True)
            if not args.keep:
                import shutil

                shutil.rmtree(landing)
        if len(args.rows) > 1:
            print("\npeak RSS by size (flat = bounded by the batch, not the file):")
            for folder in (MP_FOLDER, TB_FOLDER):
                for target in targets:
                    cells = [f"{n:,} rows: {rate:,.0f} rows/s, {rss:,.0f} MB"
                             for f, t, n, rate, rss in summary if f == folder and t == target]
                    print(f"  {folder:<20} {target:<6} " + " | ".join(cells))
        print(f"load average during the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
