"""identity.connection.connect: the DuckDB connections of identity, the pipeline's scripts and the benches."""

from __future__ import annotations

import subprocess
import sys

import pytest

from identity.cli import main
from identity.connection import check_database_path, connect

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


def test_only_duckdb_files_pass_as_databases(tmp_path):
    """DuckDB 2.0 opens `x.csv` as an in-memory database showing the CSV: a state saved there would be lost."""
    with connect(tmp_path / "oneid.duckdb") as con:
        con.execute("create table t as select 1")
    check_database_path(tmp_path / "oneid.duckdb")
    check_database_path(tmp_path / "new.duckdb")  # DuckDB creates it
    (tmp_path / "empty.db").write_bytes(b"")  # as tempfile makes it: DuckDB makes it a database
    check_database_path(tmp_path / "empty.db")
    (tmp_path / "obs.csv").write_text("source,record_id\ncrm,1\n", encoding="utf-8")
    for path, message in [
        (tmp_path / "obs.csv", r"obs\.csv is not a DuckDB database file"),
        (tmp_path / "new.csv", r"new\.csv: a \.csv file cannot hold a database"),
        (tmp_path / "out.parquet", r"a \.parquet file cannot hold a database"),
        (tmp_path, "is a folder"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_database_path(path)


def test_cli_refuses_a_state_that_would_not_be_kept(tmp_path, capsys):
    observations = tmp_path / "obs.csv"
    observations.write_text(
        "source,record_id,id_type,scope,id_value,observed_at\ncrm,1,phone,,13912345678,\n", encoding="utf-8"
    )
    argv = ["resolve", "--observations", str(observations), "--out", str(tmp_path / "out.csv")]
    assert main([*argv, "--state", str(observations)]) == 1
    assert "is not a DuckDB database file" in capsys.readouterr().err
    assert observations.read_text(encoding="utf-8").startswith("source,record_id")
    assert main([*argv, "--state", str(tmp_path / "state.duckdb")]) == 0
    assert main(["explain", "--id-type", "phone", "--value", "13912345678", "--state", str(observations)]) == 1
    assert "is not a DuckDB database file" in capsys.readouterr().err
