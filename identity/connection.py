"""DuckDB connections as identity (and the pipeline, and the benches) open them."""

from __future__ import annotations

import os


def connect(database: str | os.PathLike = ":memory:", read_only: bool = False):
    """A DuckDB connection to `database` (in memory by default) that draws no progress bar. DuckDB otherwise draws
    one on stdout for any query running longer than two seconds, terminal or not: into the CLI's output, the
    benches' tables and the pipeline's logs (the setting is per connection; DuckDB refuses it in `connect`'s
    config)."""
    import duckdb

    return without_progress_bar(duckdb.connect(str(database), read_only=read_only))


def without_progress_bar(con):
    """`con`, with DuckDB's progress bar turned off (for connections opened elsewhere, e.g. by Dagster's resource)."""
    con.execute("set enable_progress_bar = false")
    return con


def copy_to_csv(con, query: str, path: str | os.PathLike) -> None:
    """The rows of `query` (a table name or a parenthesized select) as a CSV file with a header, written by DuckDB
    without passing through Python."""
    quoted = str(path).replace("'", "''")
    con.execute(f"copy {query} to '{quoted}' (header, delimiter ',')")
