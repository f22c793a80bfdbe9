"""A run killed at any point, then run again, leaves exactly the tables of a run that was never interrupted.

The pipeline runs in its own process group (tests/pipelines/crash_driver.py); ONEID_TEST_CRASH_AT makes it
SIGKILL itself at a named point, as a power cut would: mid-file (after a committed block, in-flight marker
set), just before a file's commit, before and after identity publishes. The crashes are chained on one
warehouse, each run starting from what the previous one left, over two deliveries of exports (the second
makes identity merge users), and clean runs finish each delivery.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.settings import REPO_ROOT
from warehouse_fingerprint import table_fingerprints

pytestmark = pytest.mark.slow
DRIVER = Path(__file__).with_name("crash_driver.py")
# (landing, crash point or None for a clean run). Phase 1 holds every export but the mini-program logins; phase 2
# adds them, and they link openids to unionids and phones: the second identity run merges users, so the merge
# log has entries that a crash could lose or duplicate.
CHAIN = [
    ("phase1", "ingest:before_commit"),
    ("phase1", None),
    ("phase2", "ingest:mid_file"),
    ("phase2", "ingest:mid_file"),
    ("phase2", "identity:before_publish"),
    ("phase2", "identity:after_publish"),
    ("phase2", None),
]


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
def phases(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("crash_brand")
    subprocess.run(
        [sys.executable, "-m", "samplegen", "--users", "300", "--seed", "5", "--out", str(out)],
        check=True, capture_output=True, cwd=REPO_ROOT,
    )
    phase1 = out / "phase1"
    shutil.copytree(out / "landing", phase1)
    shutil.rmtree(phase1 / "mp_logins")
    return {"phase1": phase1, "phase2": out / "landing"}


def test_runs_killed_at_each_point_then_rerun_equal_an_uninterrupted_run(phases, tmp_path):
    clean = tmp_path / "clean.duckdb"
    for phase in ("phase1", "phase2"):
        done = _run(clean, phases[phase])
        assert done.returncode == 0, done.stderr[-3000:]
    expected = table_fingerprints(clean)
    assert expected["raw.mp_logins"][0] > 128  # the tiny block size makes this file commit in several blocks
    assert expected["identity.merge_log"][0] > 0  # phase 2 merged users

    crashed = tmp_path / "crashed.duckdb"
    leftovers = []
    for phase, point in CHAIN:
        result = _run(crashed, phases[phase], crash_at=point)
        if point is None:
            assert result.returncode == 0, result.stderr[-3000:]
            continue
        assert result.returncode in (-9, 137), (point, result.returncode, result.stderr[-2000:])
        assert f"killing the run at {point}" in result.stderr
        if point == "ingest:mid_file":
            with duckdb.connect(str(crashed), read_only=True) as con:
                leftovers.append(con.sql("select count(*) from raw._ingest_inflight").fetchall()[0][0])
    # the mid-file crashes really left committed partial rows behind for the next run to clean up
    assert leftovers and all(n == 1 for n in leftovers)

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
