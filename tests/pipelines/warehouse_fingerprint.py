"""A fingerprint of every table in a warehouse, for comparing a crashed-and-rerun warehouse with a clean one."""

from __future__ import annotations

import hashlib

import duckdb

# Load/attempt times differ between any two runs; they say when, not what.
TIME_COLUMNS = {"_loaded_at", "loaded_at", "started_at", "attempted_at"}
# Logs of attempts, not data: a rerun legitimately adds a row (identity logs every run, even one with nothing
# new; load_log notes a file seen again as `duplicate`). Their data rows are compared without those entries.
ATTEMPT_TABLES = {("identity", "runs"), ("identity_state", "runs"), ("identity_state", "last_attempt")}
ROW_FILTERS = {("raw", "load_log"): "status <> 'duplicate'"}
# The number of the run that published the list of input files: a crashed run still takes a run number.
RUN_NUMBER_COLUMNS = {("identity_state", "input_files"): {"run_id"}}


def table_fingerprints(database, schemas: tuple[str, ...] | None = None) -> dict[str, tuple[int, str]]:
    """{schema.table: (rows, sha256 of the sorted rows)} for every base table (views follow from tables)."""
    out = {}
    with duckdb.connect(str(database), read_only=True) as con:
        tables = con.sql(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' order by all"
        ).fetchall()
        for schema, table in tables:
            if (schemas and schema not in schemas) or (schema, table) in ATTEMPT_TABLES:
                continue
            columns = [
                name
                for (name,) in con.execute(
                    "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
                    "order by ordinal_position",
                    [schema, table],
                ).fetchall()
                if name not in TIME_COLUMNS and name not in RUN_NUMBER_COLUMNS.get((schema, table), ())
            ]
            select = ", ".join(f'"{c}"' for c in columns)
            where = f" where {ROW_FILTERS[(schema, table)]}" if (schema, table) in ROW_FILTERS else ""
            rows = sorted(repr(row) for row in con.sql(f'select {select} from "{schema}"."{table}"{where}').fetchall())
            out[f"{schema}.{table}"] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return out
