"""Publish the analyst database: the marts (and the lookups analysts join to) copied out of the warehouse.

Analysts open the analyst file read-only while the pipeline keeps writing the warehouse; DuckDB allows one
writing process per file, so they never touch the warehouse itself. The copy is written to a temporary file in
the target's folder and moved over the target with `os.replace`, which is atomic on one filesystem: a reader
opening the path gets either the previous complete file or the new complete file, never a half-written one, and
never a lock error (no process ever writes the published file in place).

Plain DuckDB, no Dagster: the `publish/analyst_db` asset is a thin wrapper (pipelines/defs/publish.py).
"""

from __future__ import annotations

import contextlib
import glob
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from pipelines.faults import crash_point

# What analysts get. Only these schemas are copied: raw, staging, intermediate and identity hold personal
# identifiers and per-source rows that analysts do not need (PIPL: minimum necessary).
PUBLISHED_SCHEMAS = ("marts", "seeds")
# One row per published table, written in the same file: a reader can check what it sees is one publication.
MANIFEST_SCHEMA = "oneid"
MANIFEST_TABLE = "published_tables"
_ALIAS = "analyst_out"
_SHANGHAI = ZoneInfo("Asia/Shanghai")


class PublishError(RuntimeError):
    """The analyst database could not be written; the previously published file is left as it was."""


@dataclass(frozen=True)
class PublishResult:
    path: Path
    publish_id: str
    published_at: datetime
    tables: dict[str, int]  # "schema.table" -> rows
    bytes: int


def published_tables(con: duckdb.DuckDBPyConnection, schemas: tuple[str, ...] = PUBLISHED_SCHEMAS) -> list[tuple]:
    """(schema, table) of the base tables and views of `schemas` in the connection's own database."""
    placeholders = ", ".join("?" for _ in schemas)
    return con.execute(
        "select table_schema, table_name from information_schema.tables "
        f"where table_catalog = current_database() and table_schema in ({placeholders}) "
        "order by table_schema, table_name",
        list(schemas),
    ).fetchall()


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        path.unlink()


def _temp_path(target: Path) -> Path:
    # Same folder as the target: os.replace is only atomic within one filesystem. The leading dot keeps it out
    # of globs of *.duckdb files.
    return target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def _remove_stale_temps(target: Path) -> None:
    """Temporary files of publishers that died before their os.replace (a killed run): nobody will finish them."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        parts = stale.name[len(target.name) + 2:].split(".")
        pid = int(parts[0]) if parts and parts[0].isdigit() else None
        if pid is not None and pid != os.getpid() and _alive(pid):
            continue
        _remove(stale)
        _remove(Path(f"{stale}.wal"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        pass
    return True


def publish(
    con: duckdb.DuckDBPyConnection,
    target: Path,
    schemas: tuple[str, ...] = PUBLISHED_SCHEMAS,
    publish_id: str | None = None,
) -> PublishResult:
    """Copy the tables of `schemas` from the warehouse `con` into a new DuckDB file and move it to `target`.

    Raises PublishError naming the path when the folder cannot be written or the disk is full; the file already
    at `target` is then untouched and the temporary file removed.
    """
    target = Path(target).resolve()
    tables = published_tables(con, schemas)
    if not any(schema == "marts" for schema, _ in tables):
        raise PublishError(f"nothing to publish to {target}: the warehouse has no marts tables (run dbt first)")
    publish_id = publish_id or uuid.uuid4().hex
    published_at = datetime.now(_SHANGHAI).replace(tzinfo=None)
    temp = _temp_path(target)
    attached = False
    try:
        if not target.parent.is_dir():
            raise PublishError(f"cannot publish the analyst database to {target}: {target.parent} is not a folder")
        _remove_stale_temps(target)
        con.execute(f"attach '{_quote(temp)}' as {_ALIAS}")
        attached = True
        counts: dict[str, int] = {}
        for schema in {schema for schema, _ in tables} | {MANIFEST_SCHEMA}:
            con.execute(f'create schema if not exists {_ALIAS}."{schema}"')
        for schema, table in tables:
            con.execute(f'create table {_ALIAS}."{schema}"."{table}" as select * from "{schema}"."{table}"')
            counts[f"{schema}.{table}"] = con.sql(f'select count(*) from {_ALIAS}."{schema}"."{table}"').fetchall()[0][0]
        con.execute(
            f'create table {_ALIAS}."{MANIFEST_SCHEMA}"."{MANIFEST_TABLE}" ('
            "publish_id varchar, published_at timestamp, table_schema varchar, table_name varchar, row_count bigint)"
        )
        con.executemany(
            f'insert into {_ALIAS}."{MANIFEST_SCHEMA}"."{MANIFEST_TABLE}" values (?, ?, ?, ?, ?)',
            [[publish_id, published_at, *name.split(".", 1), rows] for name, rows in counts.items()],
        )
        # Everything into the main file now: the moved file must not depend on a WAL left beside the temp name.
        con.execute(f"checkpoint {_ALIAS}")
        con.execute(f"detach {_ALIAS}")
        attached = False
        if Path(f"{temp}.wal").exists():
            raise PublishError(f"DuckDB left a WAL beside {temp}; not publishing a file that depends on it")
        size = temp.stat().st_size
        # A WAL at the target could only come from someone writing the analyst file; DuckDB would replay it
        # onto the new file.
        _remove(Path(f"{target}.wal"))
        crash_point("publish:before_replace")
        os.replace(temp, target)
    except PublishError:
        _cleanup(con, temp, attached)
        raise
    except (OSError, duckdb.Error) as error:
        _cleanup(con, temp, attached)
        raise PublishError(
            f"cannot publish the analyst database to {target}: {error}. The previously published file, if any, "
            "is unchanged."
        ) from error
    return PublishResult(path=target, publish_id=publish_id, published_at=published_at, tables=counts, bytes=size)


def _cleanup(con: duckdb.DuckDBPyConnection, temp: Path, attached: bool) -> None:
    if attached:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"detach {_ALIAS}")
    _remove(temp)
    _remove(Path(f"{temp}.wal"))


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
