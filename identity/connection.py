"""DuckDB connections as identity (and the pipeline, and the benches) open them."""

from __future__ import annotations

import os
from pathlib import Path

# DuckDB opens a path ending in one of these as an in-memory database with the file as a view (DuckDB 2.0), so
# whatever is "saved" there is lost when the connection closes
_NOT_DATABASES = {".csv", ".tsv", ".txt", ".gz", ".parquet", ".json", ".jsonl", ".ndjson", ".xlsx", ".xls"}


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


def check_database_path(path: str | os.PathLike) -> None:
    """ValueError unless `path` is a DuckDB database file, or a new file that DuckDB will create as one."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a DuckDB database file")
    if path.exists():
        with path.open("rb") as handle:
            header = handle.read(12)
        # a DuckDB file's magic bytes come after its 8-byte checksum; DuckDB makes an empty file a new database
        if header and header[8:12] != b"DUCK":
            raise ValueError(f"{path} is not a DuckDB database file")
    elif path.suffix.lower() in _NOT_DATABASES:
        raise ValueError(
            f"{path}: a {path.suffix} file cannot hold a database; give a DuckDB file such as oneid.duckdb"
        )
