"""One writer per warehouse: a second run fails at once naming the lock; an unwritable target fails clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines.runlock import WarehouseBusy, WarehouseLock, WarehouseNotWritable, check_writable, lock_path
from pipelines.settings import REPO_ROOT

HOLD = textwrap.dedent(
    """
    import sys, time
    from pipelines.runlock import WarehouseLock
    with WarehouseLock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
    """
)

# A real Dagster run of the ingest assets against the warehouse, in its own process.
RUN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from dagster import materialize
    from pipelines.defs.ingest import raw_assets
    from pipelines.defs.resources import build_resources
    from pipelines.settings import REPO_ROOT, Settings
    settings = Settings(database=Path(sys.argv[1]), landing_dir=Path(sys.argv[2]), config_dir=REPO_ROOT / "config",
                        truth_file=Path(sys.argv[2]))
    result = materialize(raw_assets, resources=build_resources(settings), raise_on_error=True)
    print("run ok", result.success)
    """
)


def _holder(database: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(database)], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        start_new_session=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def _run(database: Path, landing: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUN, str(database), str(landing)], capture_output=True, text=True, cwd=REPO_ROOT,
        env={**os.environ, "ONEID_DATABASE": str(database)}, timeout=300,
    )


def test_second_run_fails_naming_the_lock_while_another_holds_it(tmp_path):
    database, landing = tmp_path / "oneid.duckdb", tmp_path / "landing"
    (landing / "mp_logins").mkdir(parents=True)
    (landing / "mp_logins" / "a.csv").write_text(
        "log_id,appid,openid,unionid,phone,login_time\nL1,wxmp0000000demo01,oAAAA,,,2025-01-01 10:00:00\n"
    )
    holder = _holder(database)
    try:
        blocked = _run(database, landing)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert blocked.returncode != 0
    output = blocked.stdout + blocked.stderr
    assert "another OneID run holds the warehouse" in output and str(lock_path(database)) in output
    assert not database.exists()  # the refused run wrote nothing

    # the holder was SIGKILLed: the kernel dropped its lock, the next run goes through
    done = _run(database, landing)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "run ok True" in done.stdout


def test_lock_waits_when_asked_and_is_exclusive_in_process(tmp_path):
    database = tmp_path / "oneid.duckdb"
    with WarehouseLock(database):
        with pytest.raises(WarehouseBusy, match="oneid.duckdb.lock"):
            WarehouseLock(database, wait=0.5).acquire()
    started = time.monotonic()
    with WarehouseLock(database, wait=5):
        assert time.monotonic() - started < 2


def test_unwritable_warehouse_fails_before_any_work(tmp_path):
    # /sys is a read-only mount here; even root cannot create files in it
    if os.access("/sys", os.W_OK) and _can_create(Path("/sys")):
        pytest.skip("/sys is writable on this machine")
    with pytest.raises(WarehouseNotWritable, match="not writable"):
        check_writable(Path("/sys/oneid.duckdb"))
    with pytest.raises(WarehouseNotWritable, match="does not exist"):
        check_writable(tmp_path / "missing" / "oneid.duckdb")


def _can_create(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
        (folder / ".probe").unlink()
        return True
    except OSError:
        return False


def test_warehouse_connections_draw_no_progress_bar(tmp_path):
    """DuckDB draws a progress bar on stdout for queries over two seconds, which lands in the run's logs."""
    from pipelines.defs.resources import LockedDuckDBResource

    with LockedDuckDBResource(database=str(tmp_path / "w.duckdb")).get_connection() as con:
        assert con.sql("select current_setting('enable_progress_bar')").fetchall() == [(False,)]
