"""identity.connection.connect: the DuckDB connections of identity, the pipeline's scripts and the benches."""

from __future__ import annotations

import subprocess
import sys

from identity.connection import connect

# DuckDB draws its bar for queries running longer than two seconds: this one takes about six here. (Lowering
# `progress_bar_time` instead would turn the bar back on.)
QUERY = """
con.sql("select count(distinct md5(i::varchar)) from range(20000000) t(i)").fetchall()
"""


def test_connections_in_memory_and_on_files_draw_no_progress_bar(tmp_path):
    for database in (":memory:", tmp_path / "oneid.duckdb"):
        with connect(database) as con:
            assert con.sql("select current_setting('enable_progress_bar')").fetchall() == [(False,)]
    with connect(tmp_path / "oneid.duckdb", read_only=True) as con:
        assert con.sql("select current_setting('enable_progress_bar')").fetchall() == [(False,)]


def _stdout(opening: str) -> str:
    script = opening + QUERY
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout


def test_a_slow_query_prints_nothing_on_stdout():
    """What the setting is for: DuckDB prints its bar on stdout even when stdout is not a terminal."""
    # DuckDB's own default (were this machine fast enough to run the query in under two seconds, this fails, rather
    # than the next line passing for nothing)
    assert "%" in _stdout("import duckdb; con = duckdb.connect()")
    assert _stdout("from identity.connection import connect; con = connect()") == ""
