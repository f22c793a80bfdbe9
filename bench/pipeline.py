"""Benchmark the whole graph end to end: wall time and peak memory per step and in total.

    .venv/bin/python bench/pipeline.py                      # 1M persons (about 5M source rows), seed 7
    .venv/bin/python bench/pipeline.py --activity 4.25      # issue 6's brand: 1M persons, about 10M source rows
    .venv/bin/python bench/pipeline.py --users 100000       # 100k persons
    .venv/bin/python bench/pipeline.py --work /big/disk --keep   # keep the warehouse, to profile steps on it
    .venv/bin/python bench/pipeline.py --users 100000 --runs 2   # and the next day's run, with the kept state
    .venv/bin/python bench/pipeline.py --users 100000 --runs 2 --hold-back crm_members   # ... which brings a new file

Generates the brand once with samplegen into data/generated/pipeline-<users>-<seed>/, or pipeline-<users>-<seed>-a<X>/
with --activity X other than 1 (git-ignored; reused when it exists and its manifest has the same users, seed and
activity; generation is not timed), then runs the `oneid_full_run` job (ingest, GX checks, identity, dbt build
with its tests, publish) into a fresh temporary warehouse, the way the daily schedule runs it. The --activity 4.25
brand of 1M persons is about 1.7 GB and takes about 1.65 times as long to generate as the default one (both
estimated from 40,000-50,000 persons).

Time per step comes from Dagster's STEP_START / STEP_SUCCESS events. Memory is sampled every 0.2 s as the summed
RSS of this process and all its descendants (dbt runs as a child process), read from /proc; a step's peak is the
highest sample while it ran. The total peak is the highest sample of the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path, and bench/identity.py would shadow the `identity`
# package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and every descendant."""
    tree, total, stack = _children(), 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * _PAGE
        except OSError:
            pass
        stack.extend(tree.get(pid, ()))
    return total


class RssSampler(threading.Thread):
    def __init__(self, interval: float = 0.2):
        super().__init__(daemon=True)
        self.interval, self.samples, self._halt = interval, [], threading.Event()

    def run(self) -> None:
        pid, started, reported = os.getpid(), time.time(), time.time()
        while not self._halt.is_set():
            self.samples.append((time.time(), tree_rss(pid)))
            if time.time() - reported >= 60:
                # progress on stderr, so a run stopped early still tells its memory so far
                reported = time.time()
                print(f"[bench] {reported - started:.0f}s: RSS {self.samples[-1][1] / 1e9:.2f} GB, "
                      f"peak so far {self.peak() / 1e9:.2f} GB", file=sys.stderr, flush=True)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


def brand_dir(users: int, seed: int, activity: float) -> Path:
    # The activity is in the name so that a cached brand of another activity is never reused; at 1 the name stays
    # what it was, and the brands already generated still serve.
    suffix = "" if activity == 1.0 else f"-a{activity:g}"
    return REPO / "data" / "generated" / f"pipeline-{users}-{seed}{suffix}"


def generate(users: int, seed: int, activity: float, out: Path) -> None:
    if (out / "manifest.json").exists():
        made = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        # brands generated before samplegen had --activity have no such key: they were made at 1
        found = (made.get("users"), made.get("seed"), made.get("activity", 1.0))
        if found != (users, seed, activity):
            raise SystemExit(f"brand: {out} holds (users, seed, activity) {found}, not {(users, seed, activity)}; "
                             "remove it or pick another --out")
        print(f"brand: reusing {out}")
        return
    print(f"brand: generating {users:,} persons (seed {seed}, activity {activity:g}) into {out} ...", flush=True)
    started = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    subprocess.run([sys.executable, "-m", "samplegen", "--users", str(users), "--seed", str(seed), "--out", str(out),
                    "--activity", repr(activity), "--quiet"], check=True, cwd=REPO)
    print(f"brand: generated in {time.perf_counter() - started:.0f}s")


def step_windows(instance, run_id: str) -> list[tuple[str, float, float, str]]:
    """(step, start, end, status) in start order, from the run's event log."""
    starts, ends = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        kind = event.event_type_value
        if kind == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            ends[event.step_key] = (entry.timestamp, "ok" if kind == "STEP_SUCCESS" else "FAILED")
    return sorted(
        ((step, start, *ends.get(step, (start, "?"))) for step, start in starts.items()), key=lambda w: w[1]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--activity", type=float, default=1.0,
                        help="samplegen --activity: repeat logins and orders per person (4.25: about 10 source rows "
                             "per person)")
    parser.add_argument("--out", type=Path,
                        help="brand folder (default data/generated/pipeline-<users>-<seed>[-a<activity>])")
    parser.add_argument("--work", type=Path, help="where the temporary warehouse goes (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the warehouse (to profile steps on it later)")
    parser.add_argument("--runs", type=int, default=1,
                        help="run the job this many times on the same warehouse: the later runs are the next days' "
                             "scheduled runs with no new files (identity then runs with the kept state)")
    parser.add_argument("--hold-back", metavar="FOLDER",
                        help="keep the last file (by name) of this landing folder out of the first run and bring it "
                             "in before the second: the next day's drop (needs --runs 2 or more)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.hold_back and args.runs < 2:
        parser.error("--hold-back needs --runs 2 or more")
    from samplegen.simulate import MAX_ACTIVITY
    if not 0.0 < args.activity <= MAX_ACTIVITY:
        parser.error(f"--activity must be > 0 and <= {MAX_ACTIVITY:g}")

    brand = args.out or brand_dir(args.users, args.seed, args.activity)
    generate(args.users, args.seed, args.activity, brand)
    work = Path(tempfile.mkdtemp(prefix="oneid-bench-", dir=args.work))
    try:
        return run(args, brand, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system (--work elsewhere): a copy
        shutil.copy2(source, target)


def run(args, brand: Path, work: Path) -> int:
    os.environ["ONEID_DATABASE"] = str(work / "oneid.duckdb")  # dbt reads it, also when the defs load
    os.environ.setdefault("DAGSTER_HOME", str(work / "dagster"))
    # the brand is generated fake data, so the public demo key is fine unless a real key is set
    os.environ.setdefault("ONEID_ALLOW_DEMO_KEY", "1")

    from dagster import DagsterInstance

    from pipelines.definitions import FULL_RUN_JOB_NAME, build_defs
    from pipelines.settings import Settings

    landing, held = brand / "landing", None
    if args.hold_back:
        # a landing folder of links to the brand's files, so that one can be held back without touching the brand
        landing = work / "landing"
        shutil.copytree(brand / "landing", landing, copy_function=_link_or_copy)
        files = sorted(p for p in (landing / args.hold_back).glob("*") if p.is_file())
        if not files:
            raise SystemExit(f"--hold-back: no files in {brand / 'landing' / args.hold_back}")
        held = files[-1]
        held_aside = work / held.name
        held.rename(held_aside)
    settings = Settings(
        database=work / "oneid.duckdb", landing_dir=landing, config_dir=REPO / "config",
        truth_file=brand / "truth" / "records.csv.gz", analyst_database=work / "analyst.duckdb",
    )
    defs = build_defs(settings)
    instance = DagsterInstance.ephemeral()
    sampler = RssSampler()
    sampler.start()
    runs = []
    try:
        for number in range(1, args.runs + 1):
            if held is not None and number == 2:
                held_aside.rename(held)
            started = time.time()
            result = defs.resolve_job_def(FULL_RUN_JOB_NAME).execute_in_process(instance=instance, raise_on_error=False)
            runs.append((started, time.time(), result))
            if not result.success:
                break
    finally:
        sampler.stop()

    from identity.connection import connect

    with connect(str(settings.database), read_only=True) as con:
        source_rows = con.sql("select coalesce(sum(rows_loaded + rows_quarantined), 0) from raw.load_log").fetchall()
        users = con.sql("select count(*) from identity.users where records > 0").fetchall()
        identity_runs = con.sql(
            "select run_id, mode, batch_observations, resolved_records, records from identity.runs order by run_id"
        ).fetchall()
    files = sum(1 for p in settings.landing_dir.rglob("*") if p.is_file())
    landing_bytes = sum(p.stat().st_size for p in settings.landing_dir.rglob("*") if p.is_file())

    print()
    print(f"OneID pipeline benchmark: {args.users:,} persons, seed {args.seed}, activity {args.activity:g}, "
          f"{os.cpu_count()} cores")
    print(f"  landing: {files} files, {landing_bytes / 1e9:.2f} GB, {source_rows[0][0]:,} source rows; "
          f"unified users: {users[0][0]:,}")
    for number, (started, ended, result) in enumerate(runs, start=1):
        if len(runs) > 1:
            if number == 1:
                news = ""
            elif number == 2 and held is not None:
                news = f" (new file: {held.relative_to(landing)})"
            else:
                news = " (no new files)"
            print(f"  run {number} of {args.runs}{news}")
        print(f"  {'step':<44} {'wall s':>8} {'peak RSS GB':>12}  status")
        for step, start, end, status in step_windows(instance, result.run_id):
            print(f"  {step:<44} {end - start:>8.1f} {sampler.peak(start, end) / 1e9:>12.2f}  {status}")
        print(f"  {'TOTAL (run, incl. startup)':<44} {ended - started:>8.1f} "
              f"{sampler.peak(started, ended) / 1e9:>12.2f}  {'ok' if result.success else 'FAILED'}")
    for run_id, mode, batch, resolved, records in identity_runs:
        print(f"  identity run {run_id}: {mode}, {batch:,} observations given, {resolved:,} of {records:,} records "
              "resolved")
    print(f"  warehouse {settings.database.stat().st_size / 1e9:.2f} GB, analyst database "
          f"{settings.analyst_path.stat().st_size / 1e9 if settings.analyst_path.exists() else 0:.2f} GB in {work}")
    return 0 if all(result.success for _, _, result in runs) else 1

if __name__ == "__main__":
    sys.exit(main())
