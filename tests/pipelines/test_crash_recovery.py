"""A run killed at any point, then run again, leaves exactly the tables of a run that was never interrupted.

The pipeline runs in its own process group (tests/pipelines/crash_driver.py); ONEID_TEST_CRASH_AT makes it
SIGKILL itself at a named point, as a power cut would: mid-file (after a committed block, in-flight marker
set), just before a file's commit, before and after identity publishes. The crashes are chained on one
warehouse, each run starting from what the previous one left, then a clean run finishes the job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.settings import REPO_ROOT
from warehouse_fingerprint import table_fingerprints

pytestmark = pytest.mark.slow
DRIVER = Path(__file__).with_name("crash_driver.py")
CRASH_POINTS = ["ingest:mid_file", "ingest:before_commit", "ingest:mid_file", "identity:before_publish",
                "identity:after_publish"]


def _run(database: Path, landing: Path, crash_at: str | None = None, stages: str = "upstream"):
    env = {**os.environ, "ONEID_DATABASE": str(database), "ONEID_LANDING_DIR": str(landing)}
    env.pop("ONEID_TEST_CRASH_AT", None)
    if crash_at:
        env["ONEID_TEST_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, str(DRIVER), stages], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=600, start_new_session=True,
    )


@pytest.fixture(scope="module")
def brand(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("crash_brand")
    subprocess.run(
        [sys.executable, "-m", "samplegen", "--users", "300", "--seed", "5", "--out", str(out)],
        check=True, capture_output=True, cwd=REPO_ROOT,
    )
    return out / "landing"


def test_runs_killed_at_each_point_then_rerun_equal_an_uninterrupted_run(brand, tmp_path):
    clean = tmp_path / "clean.duckdb"
    done = _run(clean, brand)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = table_fingerprints(clean)
    assert expected["raw.mp_logins"][0] > 128  # the tiny block size makes this file commit in several blocks

    crashed = tmp_path / "crashed.duckdb"
    leftovers = []
    for point in CRASH_POINTS:
        killed = _run(crashed, brand, crash_at=point)
        assert killed.returncode in (-9, 137), (point, killed.returncode, killed.stderr[-2000:])
        assert f"killing the run at {point}" in killed.stderr
        if point == "ingest:mid_file":
            with duckdb.connect(str(crashed), read_only=True) as con:
                leftovers.append(con.sql("select count(*) from raw._ingest_inflight").fetchall()[0][0])
    # the mid-file crashes really left committed partial rows behind for the next run to clean up
    assert leftovers and all(n == 1 for n in leftovers)

    final = _run(crashed, brand)
    assert final.returncode == 0, final.stderr[-3000:]
    got = table_fingerprints(crashed)
    assert sorted(got) == sorted(expected)
    different = {name: (got[name], expected[name]) for name in expected if got[name] != expected[name]}
    assert not different
    with duckdb.connect(str(crashed), read_only=True) as con:
        assert con.sql("select count(*) from raw._ingest_inflight").fetchall()[0][0] == 0
        # one loaded entry per file: nothing half-loaded, nothing loaded twice
        assert con.sql(
            "select count(*) from (select file_hash from raw.load_log where status = 'loaded' "
            "group by file_hash having count(*) > 1)"
        ).fetchall()[0][0] == 0
