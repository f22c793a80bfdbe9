"""Stable user ids between runs (rule 6) and incremental runs (rule 7).

A *state* is what the previous run left: its identity tables (observations, record_map, id_map, rejected_links,
blocked_values, users, links) plus the history no single run recomputes: every user id ever issued
(`user_ids`), the merge log and the run log. `run()` resolves afresh (every cluster gets the deterministic id of
its anchor, as without state), then maps the fresh clusters onto the previous users:

- every previous user U *lives on* in the fresh cluster holding most of its identities (then most of its
  records; ties by the fresh id);
- a fresh cluster in which several previous users live on keeps the id of the one first seen earliest
  (`users.first_seen`, nulls last, then the smaller id); the others are logged as `merge` (old -> new) with the
  link at which the two parts first met;
- the other parts of a previous user are logged as `split` (old -> the id their cluster gets), with the reason:
  an identity of the old user now blocked, or a link now refused, or `relinked`;
- a fresh cluster with nobody living on in it is new: it gets its anchor's id, or, when that id was issued
  before (an id is never reused), the anchor's id salted with `#1`, `#2`, ...

An incremental run resolves only the components (see `_touched_users`) that the new batch touches and copies
everything else from the state; the result equals a full run over all observations with the same state. Its
state need not be loaded whole: `load_touched_state` loads only the touched users' rows from the database, and
`save_changes` writes back only what changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from identity.config import IdentityConfig
from identity.connection import copy_to_csv
from identity.normalize import BLOCK_REASONS, OUTPUT_COLUMNS, normalize_observations, phone_hashes
from identity.resolution import (
    BLOCKED_SCHEMA,
    HASH_TYPES,
    ID_MAP_SCHEMA,
    LINKS_SCHEMA,
    RECORD_MAP_SCHEMA,
    REJECTED_SCHEMA,
    USERS_SCHEMA,
    Hints,
    LinkParts,
    LinkTable,
    Resolution,
    _digest_phones,
    _is_digest,
    link_rows_of_users,
    links_frame,
    links_of_users,
    resolve,
    take_links,
    user_id_for,
)

LATEST_SCHEMA = "identity"
HISTORY_SCHEMA = "identity_state"
ID_KEY = ["id_type", "scope", "id_value"]
RECORD_KEY = ["source", "record_id"]

MERGE_LOG_SCHEMA = {
    "run_id": pl.Int64,
    "event": pl.String,  # merge | split
    "old_user_id": pl.String,
    "new_user_id": pl.String,
    "reason": pl.String,  # link | blocked:<reason> | unique_conflict:<type> | relinked
    "source": pl.String,
    "record_id": pl.String,
    "id_type": pl.String,
    "scope": pl.String,
    "id_value": pl.String,
}
USER_IDS_SCHEMA = {
    "user_id": pl.String,
    "created_run": pl.Int64,
    "retired_run": pl.Int64,
    "retired_into": pl.String,
}
RUNS_SCHEMA = {
    "run_id": pl.Int64,
    "mode": pl.String,  # full | incremental
    "started_at": pl.Datetime("us"),
    "config_hash": pl.String,
    "observations": pl.Int64,
    "batch_observations": pl.Int64,
    "resolved_records": pl.Int64,
    "records": pl.Int64,
    "users": pl.Int64,
    "new_users": pl.Int64,
    "merges": pl.Int64,
    "splits": pl.Int64,
    "largest_user_size": pl.Int64,
}
LATEST_TABLES = {
    "observations": None,
    "record_map": RECORD_MAP_SCHEMA,
    "id_map": ID_MAP_SCHEMA,
    "rejected_links": REJECTED_SCHEMA,
    "blocked_values": BLOCKED_SCHEMA,
    "users": USERS_SCHEMA,
    "links": LINKS_SCHEMA,
}
HISTORY_TABLES = {"user_ids": USER_IDS_SCHEMA, "merge_log": MERGE_LOG_SCHEMA, "runs": RUNS_SCHEMA}


def empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def config_hash(config: IdentityConfig) -> str:
    """Fingerprint of the rules that shape the result (not max_user_size, which only decides publishing, nor
    incremental_max_share, which only decides how a result is computed)."""
    rules = dataclasses.asdict(config)
    rules.pop("max_user_size", None)
    rules.pop("incremental_max_share", None)
    document = json.dumps(rules, sort_keys=True, default=list)
    return hashlib.sha256(document.encode()).hexdigest()[:16]


@dataclass
class State:
    """The identity tables of the last run plus the id history. All polars frames, except `links` after a run in
    this process: a `LinkTable` after a full run, which builds its rows when asked (`frame()`, `slice`), and
    `LinkParts` after an incremental one (resolution.py; `links_frame` gives either as a DataFrame)."""

    observations: pl.DataFrame  # normalized, as identity.observations
    record_map: pl.DataFrame
    id_map: pl.DataFrame
    rejected_links: pl.DataFrame
    blocked_values: pl.DataFrame
    users: pl.DataFrame
    links: pl.DataFrame | LinkTable | LinkParts
    user_ids: pl.DataFrame
    merge_log: pl.DataFrame
    runs: pl.DataFrame
    # loaded without its per-row tables (observations, links: empty here): enough for a full run, which keeps
    # the ids, not for an incremental one
    partial: bool = False
    # loaded for one batch (`load_touched_state`): the per-row tables observations, record_map and id_map hold only
    # the rows of the users the batch touches, links none (an incremental run replaces those users' links without
    # reading them), and this many rows of each stayed in the database
    held_apart: dict[str, int] = dataclasses.field(default_factory=dict)
    # loaded for one batch: the users that batch touches (`_touched_users`, found by the database), so that the
    # run on it need not find them again
    touched_users: pl.Series | None = None

    @property
    def last_run(self) -> dict | None:
        return self.runs.sort("run_id").row(-1, named=True) if self.runs.height else None

    def input_observations(self) -> pl.DataFrame:
        """The observations the state was resolved from, in input form (raw value, filled strength)."""
        return as_input(self.observations)

    def tables(self) -> dict[str, pl.DataFrame]:
        return {name: getattr(self, name) for name in [*LATEST_TABLES, *HISTORY_TABLES]}


def as_input(normalized: pl.DataFrame) -> pl.DataFrame:
    """Normalized observations back in input form: normalizing them again gives the same rows."""
    return normalized.select(
        "source", "record_id", "id_type", "scope", pl.col("raw_value").alias("id_value"), "observed_at", "strength"
    )


@dataclass(frozen=True)
class StateChanges:
    """What an incremental run changed in the state it was given, so that the state can be saved as a delta
    (`save_changes`) instead of every table again.

    The rows of `users` (previous user ids: the touched components) in the user-keyed tables (record_map, id_map,
    rejected_links, users, links) and the observations of `records` (source, record_id) are replaced by `added`,
    the re-resolved part; `registry` holds the `user_ids` rows this run created or retired; `blocked_values` is
    written whole (one row per blocked value); `merge_log` and `runs` get this run's rows.
    """

    base_run_id: int  # the run that wrote the state this changes: the database must still hold exactly that
    users: pl.DataFrame
    records: pl.DataFrame
    added: dict[str, pl.DataFrame]
    registry: pl.DataFrame


@dataclass
class RunResult:
    resolution: Resolution  # with the stable ids
    state: State  # the new state, to save
    run: dict  # this run's row of `runs`
    events: pl.DataFrame  # this run's rows of the merge log
    changes: StateChanges | None = None  # incremental runs: the delta from the state given (see save_changes)


# ---------------------------------------------------------------------------------------------- persistence


def table_exists(con, schema: str, table: str) -> bool:
    """Whether the DuckDB connection holds schema.table."""
    rows = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
    ).fetchall()
    return rows[0][0] > 0


def state_exists(con, latest_schema: str = LATEST_SCHEMA, history_schema: str = HISTORY_SCHEMA) -> bool:
    """Whether the database holds a whole state: every one of its tables (a run stopped half-way may leave some)."""
    return all(
        table_exists(con, history_schema if name in HISTORY_TABLES else latest_schema, name)
        for name in [*LATEST_TABLES, *HISTORY_TABLES]
    )


def read_parquet_frame(path: str | os.PathLike) -> pl.DataFrame:
    """The file as a polars frame with one chunk per column, read a column at a time.

    One chunk, not one per row group: that is what the identity steps work on without copies (docs/identity.md).
    A column at a time, because rechunking the whole frame at once holds it twice: at 27M observations the
    peak is 4.4 GB instead of 6.8 GB.
    """
    return pl.DataFrame(
        [pl.read_parquet(path, columns=[name]).to_series().rechunk() for name in pl.read_parquet_schema(path)]
    )


# Read through a Parquet file: DuckDB's `.pl()` materializes the whole result, then converts it, and the
# process held 8.9 GB for the 2.7 GB frame of 27M observations (6.7 GB through the file), 11 GB for `links`.
LARGE_TABLES = ("observations", "links")


def restorable_setting(shown: str) -> str:
    """A DuckDB size setting as shown ("18.8 GiB", cut to one decimal) made safe to set again: the shown figure
    plus half its last digit, so that setting it shows the same figure (setting "18.8 GiB" as shown would
    lower the limit to 18.7 GiB, and each load of the state would lower it further)."""
    number, _, unit = shown.partition(" ")
    whole, dot, decimals = number.partition(".")
    if not unit or not whole.isdigit() or (dot and not decimals.isdigit()):
        return shown
    return f"{number}5 {unit}" if dot else f"{number}.5 {unit}"  # one more decimal: half the last digit


@contextmanager
def memory_limit_lowered(con, limit: str):
    """DuckDB's memory limit lowered to `limit` for the block, then the connection's own put back: what a query
    holds beyond it, DuckDB spills to its temporary directory or does not cache, instead of growing the process
    beside the frames it runs with."""
    (shown,) = con.sql("select current_setting('memory_limit')").fetchall()[0]
    con.execute(f"set memory_limit = '{limit}'")
    try:
        yield
    finally:
        con.execute(f"set memory_limit = '{restorable_setting(shown)}'")


def load_state(
    con,
    latest_schema: str = LATEST_SCHEMA,
    history_schema: str = HISTORY_SCHEMA,
    scratch: str | os.PathLike | None = None,
    per_row_tables: bool = True,
) -> State | None:
    """The state in a DuckDB database (`identity` + `identity_state` schemas), or None if it holds no run yet.
    The large tables go through Parquet files in a temporary folder in `scratch` (default: the system's).
    per_row_tables=False leaves `observations` and `links` empty (a `partial` state: for full runs only)."""
    if not state_exists(con, latest_schema, history_schema):
        return None
    frames = {}
    # The copies stream; without a limit DuckDB keeps the blocks they read cached beside the frames (6 GB more
    # at 27M observations).
    with memory_limit_lowered(con, "1GB"):
        with tempfile.TemporaryDirectory(prefix="oneid-load-", dir=scratch) as folder:
            for name in [*LATEST_TABLES, *HISTORY_TABLES]:
                schema = history_schema if name in HISTORY_TABLES else latest_schema
                query = f'select * from "{schema}"."{name}"'
                if name in LARGE_TABLES and not per_row_tables:
                    frames[name] = con.sql(f"{query} limit 0").pl()
                elif name in LARGE_TABLES:
                    path = Path(folder) / f"{name}.parquet"
                    con.execute(f"copy ({query}) to '{_sql_text(str(path))}' (format parquet, compression lz4)")
                    frames[name] = read_parquet_frame(path)
                    path.unlink()
                else:
                    frames[name] = con.sql(query).pl()
    if frames["runs"].height == 0:
        return None
    for name, schema in {**LATEST_TABLES, **HISTORY_TABLES}.items():
        if schema is not None:
            frames[name] = frames[name].cast(schema)
    return State(**frames, partial=not per_row_tables)


WRITE_SLICE_ROWS = 2_000_000


def write_table(con, schema: str, table: str, frame: pl.DataFrame, slice_rows: int = WRITE_SLICE_ROWS) -> None:
    """Replaces the table with the frame. A large frame goes in slices: DuckDB's memory while it takes in one
    statement grows with the statement's rows (+2.3 GB for 13.6M observations whole, +1.1 GB in 2M-row slices, in
    the same time). Call it inside a transaction when readers must never see a table half written."""
    con.execute(f'create schema if not exists "{schema}"')
    for start in range(0, max(frame.height, 1), slice_rows):
        arrow_table = frame.slice(start, slice_rows).to_arrow()  # noqa: F841 -- DuckDB scans the variable by name
        if start == 0:
            con.execute(f'create or replace table "{schema}"."{table}" as select * from arrow_table')
        else:
            con.execute(f'insert into "{schema}"."{table}" select * from arrow_table')


@dataclass(frozen=True)
class StagedState:
    """A state written to Parquet files (`stage_state`), to be loaded into DuckDB by `load_staged`."""

    tables: tuple[tuple[str, str, str], ...]  # (schema, table, glob of its files), in the order they are loaded
    rows: dict[str, int]  # rows per table name (the state's tables and the extra ones)


def stage_state(
    state: State,
    folder: str | os.PathLike,
    latest_schema: str = LATEST_SCHEMA,
    history_schema: str = HISTORY_SCHEMA,
    extra: dict[str, pl.DataFrame] | None = None,
) -> StagedState:
    """Writes every table of the state (and `extra`, see `save_state`) to Parquet files under `folder`, in
    slices of `WRITE_SLICE_ROWS` rows (a `LinkTable` builds one slice at a time).

    Staging lets the caller drop the state before DuckDB takes it in: DuckDB's insert grows the process by about
    3 GB at 27M observations, which then no longer sits on top of the state's frames (6 GB there).
    """
    folder = Path(folder)
    tables, rows = [], {}

    def put(schema: str, name: str, frame) -> None:
        target = folder / schema / name
        target.mkdir(parents=True, exist_ok=True)
        for part, start in enumerate(range(0, max(frame.height, 1), WRITE_SLICE_ROWS)):
            # lz4: the files live for seconds; compressing them harder costs more time than the disk it saves
            frame.slice(start, WRITE_SLICE_ROWS).write_parquet(target / f"part-{part:05d}.parquet", compression="lz4")
        tables.append((schema, name, str(target / "*.parquet")))
        rows.setdefault(name, frame.height)

    for name, frame in (extra or {}).items():
        put(latest_schema, name, frame)
    for name, frame in state.tables().items():
        put(history_schema if name in HISTORY_TABLES else latest_schema, name, frame)
    # the history is also published beside the latest tables, for dbt and for people
    for name in ("merge_log", "runs"):
        put(latest_schema, name, getattr(state, name))
    return StagedState(tables=tuple(tables), rows=rows)


# The high-cardinality text of the two largest tables is stored with zstd. DuckDB's default for text (dict_fsst)
# spent nearly twice the time on it: `links` at 26M rows took 92 s against 52 s, for 1.67 GB against 1.77 GB.
# Both tables are rewritten every run and read rarely (explain, incremental runs, forget).
ZSTD_COLUMNS = {
    "links": ("record_id", "id_value", "link_value", "user_id"),
    "observations": ("record_id", "id_value", "raw_value"),
}
ZSTD_STORAGE_VERSION = (1, 2, 0)  # files made for older DuckDB versions cannot hold zstd columns


def create_table_sql(
    schema: str,
    table: str,
    columns: list[tuple[str, str]],
    zstd: tuple[str, ...] = (),
    uncompressed: tuple[str, ...] = (),
) -> str:
    """`create or replace table` with these (name, SQL type) columns; the columns named in `zstd` compressed so,
    those in `uncompressed` stored as they are."""

    def storage(name: str) -> str:
        if name in zstd:
            return " using compression zstd"
        return " using compression uncompressed" if name in uncompressed else ""

    definitions = ", ".join(f'"{name}" {sql_type}{storage(name)}' for name, sql_type in columns)
    return f'create or replace table "{schema}"."{table}" ({definitions})'


def storage_version(con) -> tuple[int, ...] | None:
    """The storage format of the connection's database file, e.g. (2, 0, 0); None when DuckDB does not say."""
    rows = con.sql("select tags from duckdb_databases() where database_name = current_database()").fetchall()
    tag = (rows[0][0] or {}).get("storage_version", "") if rows else ""
    digits = tag.lstrip("v").rstrip("+").split(".")
    return tuple(int(d) for d in digits) if all(d.isdigit() for d in digits) else None


def holds_zstd(con) -> bool:
    """Whether the connection's database file can hold zstd columns (made for DuckDB 1.2 or later)."""
    version = storage_version(con)
    return version is not None and version >= ZSTD_STORAGE_VERSION


def create_table_from_query(
    con, schema: str, table: str, query: str, zstd: tuple[str, ...] = (), uncompressed: tuple[str, ...] = ()
) -> None:
    """`create or replace table` holding the rows of `query` (in its order), the columns named in `zstd` stored
    with zstd and those in `uncompressed` as they are; plain `create table as` without either."""
    if not zstd and not uncompressed:
        con.execute(f'create or replace table "{schema}"."{table}" as {query}')
        return
    columns = [(row[0], row[1]) for row in con.sql(f"describe {query}").fetchall()]
    con.execute(create_table_sql(schema, table, columns, zstd, uncompressed))
    con.execute(f'insert into "{schema}"."{table}" {query}')


def load_staged(con, staged: StagedState) -> None:
    """Replaces the tables with the staged files in one transaction: a failed load leaves the previous state
    whole."""
    zstd_ok = holds_zstd(con)
    # Row order is not part of any identity table, and letting DuckDB insert unordered lets it use every core
    # (a quarter less time on the 13M-row tables of 1M persons).
    con.execute("set preserve_insertion_order = false")
    try:
        with transaction(con):
            for schema, table, files in staged.tables:
                con.execute(f'create schema if not exists "{schema}"')
                zstd = ZSTD_COLUMNS.get(table, ()) if zstd_ok else ()
                create_table_from_query(con, schema, table, f"select * from read_parquet('{_sql_text(files)}')", zstd)
    finally:
        con.execute("reset preserve_insertion_order")


@contextmanager
def transaction(con):
    """One DuckDB transaction: committed when the block ends, rolled back (and the error raised) when it fails."""
    con.execute("begin transaction")
    try:
        yield
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def save_state(
    con,
    state: State,
    latest_schema: str = LATEST_SCHEMA,
    history_schema: str = HISTORY_SCHEMA,
    extra: dict[str, pl.DataFrame] | None = None,
    scratch: str | os.PathLike | None = None,
) -> None:
    """Writes every table in one transaction: a failed run leaves the previous state whole.

    `extra`: tables derived from this state (e.g. phone_keys) written to `latest_schema` in the same transaction,
    so a crash can never publish them out of step with the state. The tables go through Parquet files in a
    temporary folder in `scratch` (default: the system's); a caller that can drop the state before the load
    uses `stage_state` and `load_staged` itself.
    """
    with tempfile.TemporaryDirectory(prefix="oneid-state-", dir=scratch) as folder:
        load_staged(con, stage_state(state, folder, latest_schema, history_schema, extra))


USER_KEYED_TABLES = ("record_map", "id_map", "rejected_links", "users", "links")


class StaleStateError(RuntimeError):
    """The database no longer holds the state an incremental run started from, so its changes cannot apply."""


def copy_record_map(con, path, latest_schema: str = LATEST_SCHEMA) -> None:
    """OUT.csv of the state in a DuckDB database (source, record_id, user_id: every record it holds), written by
    DuckDB from the stored record map, so that a run that held only part of the state need not load the rest."""
    copy_to_csv(con, f'(select source, record_id, user_id from "{latest_schema}".record_map)', path)


def save_changes(
    con,
    state: State,
    changes: StateChanges,
    latest_schema: str = LATEST_SCHEMA,
    history_schema: str = HISTORY_SCHEMA,
    extra: dict[str, pl.DataFrame] | None = None,
) -> dict[str, int]:
    """Writes an incremental run as a delta, in one transaction: deletes the replaced rows (by user id, and the
    observations by record) and inserts the re-resolved part, instead of rewriting every table (`save_state`).
    The database must hold the state the run was given (checked: its last run is `changes.base_run_id`), and
    then ends up holding `state`. `extra`: user-keyed tables derived from the state (phone_keys), given as the
    rows of the re-resolved users only. Returns the rows each written table holds afterwards.
    """
    last = None
    if table_exists(con, history_schema, "runs"):
        last = con.sql(f'select max(run_id) from "{history_schema}"."runs"').fetchall()[0][0]
    if last != changes.base_run_id:
        raise StaleStateError(
            f"the state in the database is at run {last}, this run's changes apply to run {changes.base_run_id}"
        )
    frames = {
        "changed_users": changes.users.select("user_id"),
        "changed_records": changes.records.select(RECORD_KEY),
        "new_events": state.merge_log.filter(pl.col("run_id") == state.last_run["run_id"]),
        "new_run": state.runs.filter(pl.col("run_id") == state.last_run["run_id"]),
        "new_registry": changes.registry,
        "new_blocked_values": state.blocked_values,
        **{f"new_{name}": frame for name, frame in changes.added.items()},
        **{f"new_{name}": frame for name, frame in (extra or {}).items()},
    }
    user_keyed = [(latest_schema, name) for name in [*USER_KEYED_TABLES, *(extra or {})]]
    for view, frame in frames.items():
        con.register(view, frame.to_arrow())
    try:
        with transaction(con):
            for schema, name in user_keyed:
                con.execute(f'delete from "{schema}"."{name}" where user_id in (select user_id from changed_users)')
                con.execute(f'insert into "{schema}"."{name}" by name select * from new_{name}')
            target = f'"{latest_schema}"."observations"'
            con.execute(
                f"delete from {target} using changed_records c "
                f"where {target}.source = c.source and {target}.record_id = c.record_id"
            )
            con.execute(f"insert into {target} by name select * from new_observations")
            con.execute(f'delete from "{latest_schema}"."blocked_values"')
            con.execute(f'insert into "{latest_schema}"."blocked_values" by name select * from new_blocked_values')
            registry = f'"{history_schema}"."user_ids"'
            con.execute(f"delete from {registry} where user_id in (select user_id from new_registry)")
            con.execute(f"insert into {registry} by name select * from new_registry")
            for schema in dict.fromkeys((history_schema, latest_schema)):  # once if they are one schema
                con.execute(f'insert into "{schema}"."merge_log" by name select * from new_events')
                con.execute(f'insert into "{schema}"."runs" by name select * from new_run')
    finally:
        for view in frames:
            con.unregister(view)
    written = [(latest_schema, name) for name in [*LATEST_TABLES, *(extra or {})]]
    written += [(history_schema, name) for name in HISTORY_TABLES]
    return {name: con.sql(f'select count(*) from "{schema}"."{name}"').fetchall()[0][0] for schema, name in written}


# ---------------------------------------------------------------------------------------------- stable ids


class _Taken:
    """The ids a new cluster may not get: every id ever issued, plus `extra`. Looking every issued id up once per
    candidate would mean a Python set of the whole registry (millions of strings) on every run, so the registry
    is asked in one vectorized lookup about the candidates known up front, and again (rarely) about the others.
    """

    def __init__(self, issued: pl.Series, extra: set[str], candidates: list[str]):
        self.issued = issued
        self.taken = set(extra)
        self.free: set[str] = set()  # known not issued (unless added since)
        self.ask(candidates)

    def ask(self, candidates: list[str]) -> None:
        """Looks these candidates up in the registry at once."""
        asked = pl.Series(candidates, dtype=pl.String)
        issued = set(self.issued.filter(self.issued.is_in(asked.implode())).to_list())
        self.taken |= issued
        self.free |= set(candidates) - issued

    def __contains__(self, user_id: str) -> bool:
        if user_id in self.taken:
            return True
        if user_id not in self.free:
            if self.issued.is_in(pl.Series([user_id], dtype=pl.String).implode()).any():
                self.taken.add(user_id)
                return True
            self.free.add(user_id)
        return False

    def add(self, user_id: str) -> None:
        self.taken.add(user_id)


def _salted_id(anchor: str, taken: _Taken | set[str], key: bytes | None) -> str:
    candidate, salt = user_id_for(anchor, key), 0
    while candidate in taken:
        salt += 1
        candidate = user_id_for(f"{anchor}#{salt}", key)
    return candidate


def _newcomer_ids(newcomers: pl.DataFrame, issued: pl.Series, winners: pl.Series, key: bytes | None) -> pl.Series:
    """The id of each new cluster (`newcomers`: fresh, anchor; sorted by fresh), given in that order: its fresh id
    (the anchor's) unless that was ever issued, is kept by an old user (`winners`) or went to an earlier new
    cluster; else the first salted id of its anchor that is none of those (`_salted_id`).

    Vectorized for the clusters whose fresh id is free, nearly all of them (1.7M in a first run at 10M links,
    where the loop over every cluster, with the sets it kept, took 8 s); only the others go through the loop.
    A salted id is the hash of another text, so it is some cluster's fresh id only by a 64-bit collision: if that
    ever happens, every cluster goes through the loop (`_newcomer_ids_in_order`), which is the definition.
    """
    fresh = newcomers["fresh"]
    if fresh.len() == 0:
        return fresh.alias("final")
    # a semi join, not is_in: is_in against the million ids of the registry took 0.4-1 s however few were asked
    taken_before = pl.concat([issued, winners]).cast(pl.String).to_frame("fresh")
    clash = fresh.to_frame("fresh").with_row_index("_row").join(taken_before, on="fresh", how="semi")
    if clash.height == 0:
        return fresh.alias("final")
    positions = np.sort(clash["_row"].to_numpy().astype(np.int64))
    anchors = newcomers["anchor"].gather(positions).to_list()
    first_salted = [user_id_for(f"{anchor}#{salt}", key) for anchor in anchors for salt in (1, 2)]
    taken = _Taken(issued, set(winners.to_list()), first_salted)
    salted = []
    for anchor in anchors:
        final = _salted_id(anchor, taken, key)
        taken.add(final)
        salted.append(final)
    if pl.Series(salted, dtype=pl.String).is_in(fresh.implode()).any():
        return _newcomer_ids_in_order(newcomers, issued, winners, key)
    return fresh.clone().scatter(positions, salted).alias("final")


def _newcomer_ids_in_order(
    newcomers: pl.DataFrame, issued: pl.Series, winners: pl.Series, key: bytes | None
) -> pl.Series:
    """`_newcomer_ids` one cluster at a time, as it is defined."""
    taken = _Taken(issued, set(winners.to_list()), newcomers["fresh"].to_list())
    taken.ask(
        [user_id_for(f"{anchor}#{salt}", key) for fresh, anchor in newcomers.iter_rows() if fresh in taken
         for salt in (1, 2)]
    )
    new_ids = []
    for fresh, anchor in newcomers.iter_rows():
        final = fresh if fresh not in taken else _salted_id(anchor, taken, key)
        taken.add(final)
        new_ids.append(final)
    return pl.Series("final", new_ids, dtype=pl.String)


def _merge_causes(res: Resolution, merged: pl.DataFrame, node_old: dict) -> dict:
    """(loser, winner) -> the joined link at which the loser's part first met the winner's part.

    Replays the spanning-forest links of the merged clusters in link order with a small union-find whose sets
    carry the previous user ids of their members (`node_old`: per record or identity node key, the set of
    previous users that held it). Nodes are numbered first (dense ranks of their keys), so the loop, which runs
    over every joined link of the merged clusters, works on integers and lists.
    """
    winners = dict(zip(merged["fresh"].to_list(), merged["winner"].to_list()))
    joined = links_of_users(res.links, merged["fresh"].unique()).filter(pl.col("status") == "joined")
    if joined.height == 0:
        return {}
    numbered = joined.select(
        "source", "record_id", "link_type", "scope", "link_value", "user_id",
        a=(pl.struct("source", "record_id").rank("dense") - 1).cast(pl.Int64),
        b=(pl.struct("link_type", "scope", "link_value").rank("dense") - 1).cast(pl.Int64),
    )
    n_records = int(numbered["a"].max()) + 1
    n_nodes = n_records + int(numbered["b"].max()) + 1
    olds: list = [None] * n_nodes
    for a, source, record_id in numbered.select("a", "source", "record_id").unique(subset="a").iter_rows():
        olds[a] = set(node_old.get(("r", source, record_id), ()))
    for b, link_type, scope, link_value in (
        numbered.select("b", "link_type", "scope", "link_value").unique(subset="b").iter_rows()
    ):
        olds[n_records + b] = set(node_old.get(("i", link_type, scope, link_value), ()))
    parent = list(range(n_nodes))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    causes = {}
    rows = zip(numbered["a"].to_list(), numbered["b"].to_list(), numbered["user_id"].to_list())
    for index, (a, b, user_id) in enumerate(rows):
        ra, rb = find(a), find(n_records + b)
        if ra == rb:
            continue
        parent[rb] = ra
        together = olds[ra] | olds[rb]
        olds[ra], olds[rb] = together, None
        winner = winners[user_id]
        if winner in together:
            for old in together:
                if old != winner and (old, winner) not in causes:
                    causes[(old, winner)] = index
    if not causes:
        return {}
    rows_of = joined[list(causes.values())].to_dicts()  # one gather instead of a row lookup per cause
    return dict(zip(causes, rows_of))


def assign_stable_ids(
    res: Resolution,
    prev_id_map: pl.DataFrame,
    prev_record_map: pl.DataFrame,
    prev_users: pl.DataFrame,
    issued: pl.DataFrame,
    run_id: int,
    id_key: bytes | None = None,
) -> tuple[Resolution, pl.DataFrame, pl.DataFrame]:
    """(resolution with stable ids, merge-log rows of this run, user_ids registry rows created or retired).

    `prev_*` are the previous run's tables (or the part of them about the users this run re-resolves);
    `issued` is every user id ever issued (`user_ids`), so that no id is handed out twice.
    """
    fresh_users = res.users.select(pl.col("user_id").alias("fresh"), "anchor")
    ids = res.id_map.join(prev_id_map.rename({"user_id": "old"}), on=ID_KEY).select(
        pl.col("user_id").alias("fresh"), "old", pl.lit(1).alias("n_ids"), pl.lit(0).alias("n_records")
    )
    recs = res.record_map.join(prev_record_map.rename({"user_id": "old"}), on=RECORD_KEY).select(
        pl.col("user_id").alias("fresh"), "old", pl.lit(0).alias("n_ids"), pl.lit(1).alias("n_records")
    )
    overlap = (
        pl.concat([ids, recs])
        .group_by("old", "fresh")
        .agg(pl.col("n_ids").sum(), pl.col("n_records").sum())
    )
    home = (
        overlap.sort(["old", "n_ids", "n_records", "fresh"], descending=[False, True, True, False])
        .group_by("old", maintain_order=True)
        .first()
        .select("old", "fresh")
    )
    first_seen = prev_users.select(pl.col("user_id").alias("old"), "first_seen")
    claims = home.join(first_seen, on="old", how="left")
    winners = (
        claims.sort(["fresh", "first_seen", "old"], nulls_last=True)
        .group_by("fresh", maintain_order=True)
        .first()
        .select("fresh", pl.col("old").alias("winner"))
    )
    losers = claims.join(winners, on="fresh").filter(pl.col("old") != pl.col("winner"))
    splits = overlap.join(home, on=["old", "fresh"], how="anti").select("old", "fresh")

    # new clusters: the anchor's id unless it was ever issued
    newcomers = fresh_users.join(winners, on="fresh", how="anti").sort("fresh")
    new_ids = _newcomer_ids(newcomers, issued["user_id"], winners["winner"], id_key)
    mapping = pl.concat([winners.rename({"winner": "final"}), newcomers.select("fresh", new_ids.alias("final"))])

    events = []
    if losers.height:
        merged_clusters = losers.select("fresh").unique()
        merged_records = res.record_map.join(merged_clusters.rename({"fresh": "user_id"}), on="user_id", how="semi")
        merged_links = links_of_users(res.links, merged_clusters["fresh"])
        node_old = {}
        for source, record_id, old in (
            prev_record_map.join(merged_records.select(RECORD_KEY), on=RECORD_KEY).select(*RECORD_KEY, "user_id")
        ).iter_rows():
            node_old[("r", source, record_id)] = {old}
        link_keys = merged_links.select(*ID_KEY, "link_type", "link_value").unique()
        # A node can stand for identities that two previous users held: an md5 and a sha256 of one phone, each
        # its own identity until the batch brings the plain phone they both translate to. The node carries
        # both users, whatever order the join gives its rows in.
        for link_type, scope, link_value, old in (
            prev_id_map.join(link_keys, on=ID_KEY).select("link_type", "scope", "link_value", "user_id").iter_rows()
        ):
            node_old.setdefault(("i", link_type, scope, link_value), set()).add(old)
        causes = _merge_causes(res, losers.select("fresh", "winner").unique(), node_old)
        for old, fresh, winner in losers.select("old", "fresh", "winner").sort("old").iter_rows():
            link = causes.get((old, winner)) or {}
            events.append(
                (run_id, "merge", old, winner, "link", link.get("source"), link.get("record_id"),
                 link.get("id_type"), link.get("scope"), link.get("id_value"))
            )
    if splits.height:
        blocked = res.blocked_values.select(*ID_KEY, "reason")
        why_blocked = (
            prev_id_map.join(splits.select(pl.col("old").alias("user_id")).unique(), on="user_id")
            .join(blocked, on=ID_KEY)
            .sort("user_id", *ID_KEY)
            .group_by("user_id", maintain_order=True)
            .first()
        )
        blocked_of = {row["user_id"]: row for row in why_blocked.iter_rows(named=True)}
        split_finals = mapping.join(splits.select("fresh").unique(), on="fresh", how="semi")
        final_of = dict(zip(split_finals["fresh"].to_list(), split_finals["final"].to_list()))
        rejected_of = {}
        if res.rejected_links.height:
            # the cause is the old user's first refused link in link order, so the join must keep that order: a
            # polars join may reorder its rows (it did when the part an incremental run redoes was smaller than
            # the whole), and the incremental run would then log another link than the full run
            by_record = res.rejected_links.join(
                prev_record_map.rename({"user_id": "old"}), on=RECORD_KEY, maintain_order="left"
            )
            for row in by_record.iter_rows(named=True):
                rejected_of.setdefault(row["old"], row)
        for old, fresh in splits.sort("old", "fresh").iter_rows():
            cause = blocked_of.get(old)
            if cause is not None:
                reason = f"blocked:{cause['reason']}"
                source = record_id = None
            elif old in rejected_of:
                cause = rejected_of[old]
                reason, source, record_id = cause["reason"], cause["source"], cause["record_id"]
            else:
                cause, reason, source, record_id = {}, "relinked", None, None
            events.append(
                (run_id, "split", old, final_of[fresh], reason, source, record_id,
                 cause.get("id_type"), cause.get("scope"), cause.get("id_value"))
            )
    events_frame = pl.DataFrame(events, schema=MERGE_LOG_SCHEMA, orient="row")

    # registry: ids created now, ids retired now (merged away, or nothing of them left in this part)
    created = pl.DataFrame({"user_id": new_ids}, schema={"user_id": pl.String}).with_columns(
        created_run=pl.lit(run_id, dtype=pl.Int64),
        retired_run=pl.lit(None, dtype=pl.Int64),
        retired_into=pl.lit(None, dtype=pl.String),
    )
    vanished = prev_users.select(pl.col("user_id").alias("old")).join(home, on="old", how="anti")
    retired = pl.concat(
        [
            losers.select("old", pl.col("winner").alias("retired_into")),
            vanished.with_columns(retired_into=pl.lit(None, dtype=pl.String)),
        ]
    ).with_columns(retired_run=pl.lit(run_id, dtype=pl.Int64))

    def rename(frame: pl.DataFrame, column: str) -> pl.DataFrame:
        return frame.with_columns(_replace(frame[column], mapping["fresh"], mapping["final"]))

    links = res.links
    if isinstance(links, LinkTable):  # one id per user to rename, not one per link
        links = links.with_user_ids(_replace(links.user_ids, mapping["fresh"], mapping["final"]))
    elif links is not None:
        links = rename(links, "user_id")

    stable = dataclasses.replace(
        res,
        record_map=rename(res.record_map, "user_id"),
        id_map=rename(res.id_map, "user_id"),
        rejected_links=rename(rename(res.rejected_links, "user_id"), "conflicting_user_id"),
        users=rename(res.users, "user_id").sort("user_id"),
        links=links,
    )
    return stable, events_frame, _registry_update(created, retired)


def _replace(values: pl.Series, old: pl.Series, new: pl.Series) -> pl.Series:
    """`values` with each of `old` (distinct, not null) replaced by `new` at the same position.

    Most clusters keep the id of their anchor (fresh = final), so only the rows holding one of the few ids that
    change are found (by hash, see `_rows_in`) and replaced; a replace over every row cost far more.
    """
    changes = old != new
    old, new = old.filter(changes), new.filter(changes)
    if old.len() == 0 or values.len() == 0:
        return values
    rows = np.flatnonzero(_rows_in(values.to_frame("v"), old.to_frame("v"), ["v"]))
    if len(rows) == 0:
        return values
    replaced = values.gather(rows).replace_strict(old, new, return_dtype=values.dtype)
    return values.clone().scatter(rows, replaced)


def _registry_update(created: pl.DataFrame, retired: pl.DataFrame) -> pl.DataFrame:
    return pl.concat(
        [
            created.cast(USER_IDS_SCHEMA),
            retired.select(
                pl.col("old").alias("user_id"),
                pl.lit(None, dtype=pl.Int64).alias("created_run"),
                "retired_run",
                "retired_into",
            ).cast(USER_IDS_SCHEMA),
        ]
    )


def _apply_registry(registry: pl.DataFrame, update: pl.DataFrame) -> pl.DataFrame:
    """The registry with this run's created ids added and retired ids marked. Only the rows that change are
    touched: the rest stays in its order, and the changed rows are merged in by user_id when the registry was
    sorted by it (as a run in this process leaves it), else added at the end (a registry read from the database
    comes in no order, and sorting its ids cost more than the rest of this step)."""
    registry = registry.cast(USER_IDS_SCHEMA)
    created = update.filter(pl.col("created_run").is_not_null()).cast(USER_IDS_SCHEMA)
    retired = update.filter(pl.col("created_run").is_null()).select(
        "user_id", pl.col("retired_run").alias("_run"), pl.col("retired_into").alias("_into")
    )
    changing = registry["user_id"].is_in(retired["user_id"].implode())
    changed = pl.concat([registry.filter(changing), created])
    changed = changed.join(retired, on="user_id", how="left", maintain_order="left").with_columns(
        retired_run=pl.coalesce("_run", "retired_run"),
        retired_into=pl.when(pl.col("_run").is_not_null()).then(pl.col("_into")).otherwise(pl.col("retired_into")),
    )
    changed = changed.select(list(USER_IDS_SCHEMA)).sort("user_id")
    rest = registry.filter(~changing)
    if not rest["user_id"].is_sorted():
        return pl.concat([rest, changed])
    return rest.merge_sorted(changed, key="user_id")


# ---------------------------------------------------------------------------------------------- incremental


def _key_hash(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """A 64-bit hash (uint64) of each row's key. Only ever a filter: `_rows_in` confirms every hit on the strings."""
    combined = None
    for column in columns:
        part = frame[column].hash(seed=0).to_numpy()
        # numpy's uint64 arithmetic wraps, which is what a hash combiner wants
        combined = part if combined is None else (combined * np.uint64(0x9E3779B97F4A7C15)) ^ part
    return combined


def _rows_in(
    frame: pl.DataFrame, keys: pl.DataFrame, columns: list[str], hashed: list[str] | None = None
) -> np.ndarray:
    """Boolean mask of the rows of `frame` whose key (`columns`, never null) is a row of `keys`; exact.

    A semi-join on string keys hashes and compares every row of a state table of millions of rows against the
    few keys a batch touches, and dominated incremental runs. Here each row costs a hash of the `hashed`
    columns (default: all; one selective column is cheaper, e.g. the record id of (source, record_id)) and a
    lookup in a bitmap of the keys' hashes. Only rows that pass are paired, by an integer join on the hash, with
    every key of that hash, and compared with it column by column: a collision can neither keep nor drop a row.
    """
    mask = np.zeros(frame.height, dtype=bool)
    keys = keys.select(columns).unique()
    if frame.height == 0 or keys.height == 0:
        return mask
    hashed = hashed or columns
    key_hashes = _key_hash(keys, hashed)
    hashes = _key_hash(frame, hashed)
    # about 16 bitmap slots per key: one gather rules out most rows before the join
    bits = min(max(len(key_hashes) * 16, 1 << 16), 1 << 28).bit_length()
    low = np.uint64((1 << bits) - 1)
    bitmap = np.zeros(1 << bits, dtype=bool)
    bitmap[(key_hashes & low).astype(np.intp)] = True
    rows = np.flatnonzero(bitmap[(hashes & low).astype(np.intp)])
    pairs = pl.DataFrame({"h": hashes[rows], "row": rows}).join(
        pl.DataFrame({"h": key_hashes, "key": np.arange(len(key_hashes))}), on="h"
    )
    rows, key_rows = pairs["row"].to_numpy(), pairs["key"].to_numpy()
    same = np.ones(len(rows), dtype=bool)
    for column in columns:
        same &= (frame[column].gather(rows) == keys[column].gather(key_rows)).fill_null(False).to_numpy()
    mask[rows[same]] = True
    return mask


def _component_users(rejected_links: pl.DataFrame, touched: pl.Series) -> pl.Series:
    """The users of every component holding a touched user: users tied together by refused links form one
    component of the plain link graph (records and identities, ignoring the uniqueness rule), the unit a greedy
    run can be redone on alone. Only users with a refused link can share a component with another user, so the
    connected components are computed over those alone."""
    touched = touched.unique()
    edges = rejected_links.select("user_id", "conflicting_user_id").unique()
    if edges.height == 0 or touched.len() == 0:
        return touched
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ends = pl.concat([edges["user_id"], edges["conflicting_user_id"]]).unique().to_frame("user_id").with_row_index("i")
    pairs = edges.join(ends, on="user_id").join(
        ends.rename({"user_id": "conflicting_user_id", "i": "j"}), on="conflicting_user_id"
    )
    n = ends.height
    graph = coo_matrix(
        (np.ones(pairs.height, dtype=np.int8), (pairs["i"].to_numpy(), pairs["j"].to_numpy())), shape=(n, n)
    )
    _, labels = connected_components(graph, directed=False)
    hit = ends["user_id"].is_in(touched.implode()).to_numpy()
    members = ends["user_id"].filter(np.isin(labels, np.unique(labels[hit])))
    return pl.concat([touched, members]).unique()


class _PhoneDigests:
    """md5/sha256 -> plain phone over the state's distinct phones.

    Hashing every phone is the costly part of translating hashes, so it is done at most once per run, and only
    when a hash needs it: the first pass also looks for every hash the state holds, which covers the hashes of
    the records re-resolved later in the run.
    """

    def __init__(self, state: State, engine: str = "auto"):
        self.state = state
        self.engine = engine
        self._found: dict[str, str] = {}
        self._looked: set[str] = set()

    def _phones(self) -> pl.Series:
        # every non-null phone of the state is a usable identity (id_map) or a blocked or shared value
        phones = [
            table.filter(pl.col("id_type") == "phone")["id_value"]
            for table in (self.state.id_map, self.state.blocked_values)
        ]
        return pl.concat(phones).drop_nulls()  # _digest_phones hashes each distinct phone once

    def _state_hashes(self) -> set[str]:
        hashes = [
            table.filter(pl.col("id_type").is_in(HASH_TYPES))["id_value"]
            for table in (self.state.id_map, self.state.blocked_values)
        ]
        return set(pl.concat(hashes).drop_nulls().to_list())

    def phones_for(self, digests: set[str]) -> list[str]:
        digests = {d for d in digests if _is_digest(d)}
        missing = digests - self._looked
        if missing:
            if not self._looked:
                missing |= {d for d in self._state_hashes() if _is_digest(d)}
            self._found.update(_digest_phones(self._phones(), missing, self.engine))
            self._looked |= missing
        return sorted({self._found[d] for d in digests if d in self._found})


def _touch_keys(batch: pl.DataFrame, digests) -> pl.DataFrame:
    """The identities (ID_KEY) through which a batch (normalized) reaches previous users: its own, the hashes of
    its plain phones, and the previous phones its hashes are digests of (`digests.phones_for`)."""
    keys = batch.filter(pl.col("id_value").is_not_null()).select(ID_KEY).unique()
    # a new plain phone translates previous hashes of it
    new_phones = batch.filter((pl.col("id_type") == "phone") & pl.col("id_value").is_not_null())["id_value"]
    new_hashes = [
        (hash_type, digest)
        for phone in new_phones.unique().to_list()
        for hash_type, digest in zip(HASH_TYPES, phone_hashes(phone))
    ]
    if new_hashes:
        hashed = pl.DataFrame(new_hashes, schema={"id_type": pl.String, "id_value": pl.String}, orient="row")
        keys = pl.concat([keys, hashed.with_columns(scope=pl.lit("")).select(ID_KEY)])
    # a new hash may translate to a previous phone
    if batch.filter(pl.col("id_type").is_in(HASH_TYPES) & pl.col("usable")).height:
        wanted = set(batch.filter(pl.col("id_type").is_in(HASH_TYPES))["id_value"].drop_nulls().to_list())
        hits = digests.phones_for(wanted)
        keys = pl.concat([keys, pl.DataFrame({"id_type": "phone", "scope": "", "id_value": hits}).select(ID_KEY)])
    return keys


def _touched_users(state: State, batch: pl.DataFrame, digests: _PhoneDigests) -> pl.Series:
    """Every previous user whose result a batch (normalized) can change: the users of every component the batch
    touches through a record or an identity (also through a hashed phone meeting its plain phone, in either
    direction)."""
    keys = _touch_keys(batch, digests)
    touched = pl.concat(
        [
            state.id_map["user_id"].filter(pl.Series(_rows_in(state.id_map, keys, ID_KEY, ["id_value"]))),
            state.record_map["user_id"].filter(
                pl.Series(_rows_in(state.record_map, batch.select(RECORD_KEY), RECORD_KEY, ["record_id"]))
            ),
        ]
    )
    return _component_users(state.rejected_links, touched)


class _DatabasePhoneDigests:
    """`_PhoneDigests` over a state still in the database: its distinct phones are read, then matched by
    `_digest_phones` (0.5 s for the 1.18M phones of the 10M-link bench, against 0.9 s hashing them inside the
    state's database)."""

    def __init__(self, con, latest_schema: str):
        self.con, self.schema = con, latest_schema

    def phones_for(self, digests: set[str]) -> list[str]:
        wanted = {d for d in digests if _is_digest(d)}
        if not wanted:
            return []
        # every non-null phone of the state is a usable identity (id_map) or a blocked or shared value
        phones = self.con.sql(
            f"""select id_value from "{self.schema}".id_map where id_type = 'phone'
                union all select id_value from "{self.schema}".blocked_values where id_type = 'phone'"""
        ).pl()["id_value"].drop_nulls()
        return sorted(set(_digest_phones(phones, wanted).values()))


# whole in a state loaded for one batch: what the rules, the ids and the health check read of every user
WHOLE_TABLES = ("rejected_links", "blocked_values", "users")
PER_ROW_TABLES = ("observations", "record_map", "id_map", "links")


class BatchTouchesTooMuch(Exception):
    """`load_touched_state` stopped before loading: the users the batch touches hold more than `max_share` of
    the records, where a full run needs less memory."""

    def __init__(self, touched_records: int, records: int):
        self.touched_records, self.records = touched_records, records
        super().__init__(f"the batch touches users holding {touched_records:,} of {records:,} records")


def load_touched_state(
    con,
    batch: pl.DataFrame,
    config: IdentityConfig | None = None,
    latest_schema: str = LATEST_SCHEMA,
    history_schema: str = HISTORY_SCHEMA,
    max_share: float | None = None,
) -> State | None:
    """The part of the state in a DuckDB database that an incremental run of `batch` (observations in input
    form) needs, or None if the database holds no run yet.

    The per-row tables observations, record_map and id_map hold only the rows of the users the batch touches
    (the same users `run` re-resolves: see `_touched_users`), found by joins in DuckDB, and `links` none of them:
    the run replaces those users' links without reading them. The others are loaded whole (they hold a row per
    user or fewer). `run(batch, config, state, incremental=True)` on it, with this same batch, gives the changes
    it would give on the whole state, to save with `save_changes`; its `state` is then the same part (with the
    re-resolved users' new links). Memory and time follow the batch and the users it touches, not the size of
    the state. `max_share`: raises BatchTouchesTooMuch, before loading any of their rows, when those users hold
    more than this share of the records.
    """
    if not state_exists(con, latest_schema, history_schema):
        return None
    frames = {name: con.sql(f'select * from "{history_schema}"."{name}"').pl() for name in HISTORY_TABLES}
    if frames["runs"].height == 0:
        return None
    frames.update({name: con.sql(f'select * from "{latest_schema}"."{name}"').pl() for name in WHOLE_TABLES})
    normalized = normalize_observations(batch, config or IdentityConfig())
    keys = _touch_keys(normalized, _DatabasePhoneDigests(con, latest_schema))
    views = {"touch_keys": keys, "touch_records": normalized.select(RECORD_KEY).unique()}
    for view, frame in views.items():
        con.register(view, frame.to_arrow())
    try:
        touched = con.sql(
            f"""
            select m.user_id from "{latest_schema}".id_map m
              semi join touch_keys k on m.id_type = k.id_type and m.scope = k.scope and m.id_value = k.id_value
            union
            select r.user_id from "{latest_schema}".record_map r
              semi join touch_records t on r.source = t.source and r.record_id = t.record_id
            """
        ).pl()["user_id"]
    finally:
        for view in views:
            con.unregister(view)
    users = _component_users(frames["rejected_links"], touched).to_frame("user_id")
    con.register("touched_users", users.to_arrow())
    try:
        by_user = "semi join touched_users u on t.user_id = u.user_id"
        if max_share is not None:
            ((touched_records, records),) = con.sql(
                f"""select (select count(*) from "{latest_schema}".record_map t {by_user}),
                           (select count(*) from "{latest_schema}".record_map)"""
            ).fetchall()
            if touched_records > max_share * records:
                raise BatchTouchesTooMuch(touched_records, records)
        for name in ("record_map", "id_map"):
            frames[name] = con.sql(f'select t.* from "{latest_schema}"."{name}" t {by_user}').pl()
        # the run replaces these users' links whole, so only their number is read (the user_id column alone,
        # instead of every column of the largest table)
        frames["links"] = con.sql(f'select * from "{latest_schema}".links limit 0').pl()
        touched_links = con.sql(f'select count(*) from "{latest_schema}".links t {by_user}').fetchall()[0][0]
        con.register("touched_records", frames["record_map"].select(RECORD_KEY).to_arrow())
        frames["observations"] = con.sql(
            f'select o.* from "{latest_schema}".observations o semi join touched_records r '
            "on o.source = r.source and o.record_id = r.record_id"
        ).pl()
    finally:
        con.unregister("touched_users")
        con.unregister("touched_records")
    loaded = {name: frames[name].height for name in PER_ROW_TABLES} | {"links": touched_links}
    held_apart = {
        name: con.sql(f'select count(*) from "{latest_schema}"."{name}"').fetchall()[0][0] - loaded[name]
        for name in PER_ROW_TABLES
    }
    for name, schema in {**LATEST_TABLES, **HISTORY_TABLES}.items():
        if schema is not None:
            frames[name] = frames[name].cast(schema)
    return State(**frames, held_apart=held_apart, touched_users=users["user_id"])


def _hints(state: State, subset: pl.DataFrame, digests: _PhoneDigests) -> Hints:
    shared = state.blocked_values.filter(pl.col("reason") == "shared").select(ID_KEY)
    hashed = subset.filter(pl.col("id_type").is_in(HASH_TYPES) & pl.col("id_value").is_not_null())
    if hashed.height == 0:
        # no hashed phone to translate: the phones elsewhere cannot matter
        return Hints(shared_keys=shared)
    # only the phones some hash here is the digest of (normalized like observations: trimmed, lowercase)
    wanted = set(hashed["id_value"].str.strip_chars().str.to_lowercase().to_list())
    found = pl.DataFrame({"id_value": digests.phones_for(wanted)}, schema={"id_value": pl.String})
    # the reason a phone had before the shared-value rule (a hash translates before that rule runs); a phone of
    # the state that is not blocked is usable or shared, so it had none
    blocked = state.blocked_values.filter((pl.col("id_type") == "phone") & (pl.col("reason") != "shared")).select(
        "id_value", pl.col("reason").alias("unusable_reason")
    )
    phones = found.join(blocked.unique(subset="id_value"), on="id_value", how="left")
    return Hints(shared_keys=shared, phones=phones)


# ---------------------------------------------------------------------------------------------- runs


def _block_counts(observations: pl.DataFrame) -> pl.DataFrame:
    """blocked_values of these observations: distinct records per blocked or shared value."""
    return (
        observations.filter(pl.col("unusable_reason").is_in(BLOCK_REASONS))
        .group_by("id_type", "scope", "id_value", "unusable_reason")
        .agg(pl.struct(RECORD_KEY).n_unique().cast(pl.Int64).alias("records"))
        .rename({"unusable_reason": "reason"})
        .select(list(BLOCKED_SCHEMA))
    )


def _blocked_values(previous: pl.DataFrame, removed: pl.DataFrame, added: pl.DataFrame) -> pl.DataFrame:
    """The previous blocked_values, less the records re-resolved (their previous observations `removed`), plus
    the counts of the re-resolved part (`added`, a blocked_values table). Records are either re-resolved whole
    or copied with their observations unchanged, so the counts add up; recounting every observation instead
    cost a group-by over all of them."""
    key = ["id_type", "scope", "id_value", "reason"]
    counts = pl.concat(
        [
            previous.select(list(BLOCKED_SCHEMA)).cast(BLOCKED_SCHEMA),
            _block_counts(removed).with_columns(-pl.col("records")).cast(BLOCKED_SCHEMA),
            added.select(list(BLOCKED_SCHEMA)).cast(BLOCKED_SCHEMA),
        ]
    )
    return (
        counts.group_by(key)
        .agg(pl.col("records").sum())
        .filter(pl.col("records") > 0)
        .sort(key)
        .select(list(BLOCKED_SCHEMA))
    )


def _stats(tables: dict[str, pl.DataFrame], base: dict, held_apart: dict[str, int]) -> dict:
    # from `users` (one row per user, with its record count) rather than a group-by over every record;
    # `held_apart`: rows of the per-row tables left in the database (a state loaded for one batch)
    users = tables["users"]
    with_records = users.filter(pl.col("records") > 0)
    per_count = np.bincount(with_records["identities"].to_numpy()) if with_records.height else np.zeros(0, np.int64)
    blocked = tables["blocked_values"]
    return {
        **base,
        "records": tables["record_map"].height + held_apart.get("record_map", 0),
        "links": tables["links"].height + held_apart.get("links", 0),
        # every linking identity belongs to exactly one user
        "identities": int(users["identities"].sum() or 0),
        "users": with_records.height,
        "largest_user_size": int(with_records["records"].max() or 0),
        "users_by_identity_count": {int(k): int(per_count[k]) for k in np.flatnonzero(per_count)},
        "links_rejected": tables["rejected_links"].height,
        "values_blocked": int((blocked["reason"] != "shared").sum()),
        "values_shared": int((blocked["reason"] == "shared").sum()),
    }


def run(
    observations: pl.DataFrame,
    config: IdentityConfig | None = None,
    state: State | None = None,
    *,
    incremental: bool = False,
    engine: str = "auto",
    started_at: datetime | None = None,
    id_key: bytes | None = None,
) -> RunResult:
    """One run with state. Full: `observations` are all of them. Incremental: `observations` are a new batch,
    added to the state's; only the components the batch touches are resolved again. id_key: see `resolve`; ids
    already issued keep their value whatever the key, so it only shapes the ids of new users."""
    config = config or IdentityConfig()
    chash = config_hash(config)
    started_at = started_at or datetime.now().replace(microsecond=0)
    last = state.last_run if state is not None else None
    run_id = (last["run_id"] + 1) if last else 1
    if incremental:
        if state is None:
            raise ValueError("an incremental run needs a state; run a full resolve first")
        if last["config_hash"] != chash:
            raise ValueError("the identity config changed since the state was written; run a full resolve")
        if state.partial:
            raise ValueError("the state was loaded without its observations and links; run a full resolve")
    elif state is not None and state.held_apart:
        raise ValueError("the state was loaded for one batch (load_touched_state): only an incremental run can use it")

    if state is None:
        prev = {"id_map": empty(ID_MAP_SCHEMA), "record_map": empty(RECORD_MAP_SCHEMA), "users": empty(USERS_SCHEMA)}
        issued = empty(USER_IDS_SCHEMA)
        registry = empty(USER_IDS_SCHEMA)
    else:
        prev = {"id_map": state.id_map, "record_map": state.record_map, "users": state.users}
        issued = registry = state.user_ids

    changes = None  # a full run is saved whole
    held_apart: dict[str, int] = {}
    if not incremental:
        res = resolve(observations, config, engine=engine, links=True, id_key=id_key)
        stable, events, update = assign_stable_ids(
            res, prev["id_map"], prev["record_map"], prev["users"], issued, run_id, id_key
        )
        tables = {
            "observations": stable.observations,
            "record_map": stable.record_map,
            "id_map": stable.id_map,
            "rejected_links": stable.rejected_links,
            "blocked_values": stable.blocked_values,
            "users": stable.users,
            "links": stable.links,
        }
        n_observations, batch_rows, resolved = observations.height, observations.height, stable.record_map.height
        stats, timings = stable.stats, stable.timings
    else:
        clock = time.perf_counter()
        batch = normalize_observations(observations, config)
        digests = _PhoneDigests(state)
        touched = state.touched_users if state.touched_users is not None else _touched_users(state, batch, digests)
        users = touched.to_frame("user_id")
        # every state table is split by masks (see _rows_in), not by joins on string keys: the previous users of
        # the touched components, all of their records, and those records' observations
        # masks as polars Series: filtering with a numpy array took about three times longer
        record_rows = pl.Series(_rows_in(state.record_map, users, ["user_id"]))
        old_records = state.record_map.filter(record_rows)
        observation_rows = pl.Series(_rows_in(state.observations, old_records, RECORD_KEY, ["record_id"]))
        old_observations = state.observations.filter(observation_rows)
        redo = pl.concat([old_records.select(RECORD_KEY), batch.select(RECORD_KEY)]).unique()
        old_input = as_input(old_observations)
        subset = pl.concat([old_input, as_input(batch).cast(old_input.schema)])
        hints = _hints(state, subset, digests)
        laps = {"select": time.perf_counter() - clock}
        res = resolve(subset, config, engine=engine, links=True, hints=hints, id_key=id_key)
        clock = time.perf_counter()
        # the users of the touched components are exactly the previous users of the re-resolved records (users
        # without records hang off a component by refused links), so `users` is the previous part to map onto
        by_user = {name: pl.Series(_rows_in(state_table, users, ["user_id"])) for name, state_table in (
            ("id_map", state.id_map), ("users", state.users), ("rejected_links", state.rejected_links),
        )}
        # links as they are held: a state from a full run in this process holds them as integers (LinkTable),
        # and the rows kept stay so (LinkParts), instead of being built as strings to be filtered
        touched_links = link_rows_of_users(state.links, users["user_id"])
        part = {
            "id_map": state.id_map.filter(by_user["id_map"]),
            "record_map": old_records,
            "users": state.users.filter(by_user["users"]),
        }
        stable, events, update = assign_stable_ids(
            res, part["id_map"], part["record_map"], part["users"], issued, run_id, id_key
        )
        laps["stable_ids"] = time.perf_counter() - clock
        clock = time.perf_counter()

        def keep(name: str, rows: pl.Series) -> pl.DataFrame:
            # a record's rows in rejected_links carry its user, so they go with the user (links: LinkParts below)
            return getattr(state, name).filter(~rows)

        tables = {
            "observations": pl.concat(
                [keep("observations", observation_rows), stable.observations.cast(state.observations.schema)]
            ),
            # not re-sorted: row order is not part of the result, and sorting strings is most of the cost
            "record_map": pl.concat([keep("record_map", record_rows), stable.record_map]),
            "id_map": pl.concat([keep("id_map", by_user["id_map"]), stable.id_map]),
            "rejected_links": pl.concat([keep("rejected_links", by_user["rejected_links"]), stable.rejected_links]),
            "blocked_values": _blocked_values(state.blocked_values, old_observations, stable.blocked_values),
            "users": pl.concat([keep("users", by_user["users"]), stable.users]),
            "links": LinkParts([take_links(state.links, np.flatnonzero(~touched_links)), stable.links]),
        }
        changes = StateChanges(
            base_run_id=last["run_id"],
            users=users,
            records=old_records.select(RECORD_KEY),
            added={
                "observations": tables["observations"].tail(stable.observations.height),
                "record_map": stable.record_map,
                "id_map": stable.id_map,
                "rejected_links": stable.rejected_links,
                "users": stable.users,
                "links": links_frame(stable.links),
            },
            registry=update.select("user_id"),  # the rows themselves once the registry is updated, below
        )
        held_apart = state.held_apart
        n_observations = state.observations.height + held_apart.get("observations", 0) + observations.height
        batch_rows, resolved = observations.height, redo.height
        stats = _stats(tables, {}, held_apart)
        laps["tables"] = time.perf_counter() - clock
        timings = {**laps, **stable.timings}

    merges = int((events["event"] == "merge").sum())
    splits = int((events["event"] == "split").sum())
    run_row = {
        "run_id": run_id,
        "mode": "incremental" if incremental else "full",
        "started_at": started_at,
        "config_hash": chash,
        "observations": n_observations,
        "batch_observations": batch_rows,
        "resolved_records": resolved,
        "records": stats["records"],
        "users": stats["users"],
        "new_users": int(update["created_run"].is_not_null().sum()),
        "merges": merges,
        "splits": splits,
        "largest_user_size": stats["largest_user_size"],
    }
    runs = pl.concat([state.runs if state else empty(RUNS_SCHEMA), pl.DataFrame([run_row], schema=RUNS_SCHEMA)])
    new_state = State(
        **{name: frame for name, frame in tables.items()},
        user_ids=_apply_registry(registry, update),
        merge_log=pl.concat([state.merge_log if state else empty(MERGE_LOG_SCHEMA), events]),
        runs=runs,
        held_apart=held_apart,
    )
    resolution = Resolution(
        record_map=tables["record_map"],
        id_map=tables["id_map"],
        rejected_links=tables["rejected_links"],
        blocked_values=tables["blocked_values"],
        observations=tables["observations"].select(OUTPUT_COLUMNS),
        stats={**stats, "merges": merges, "splits": splits, "new_users": run_row["new_users"]},
        timings=timings,
        users=tables["users"],
        links=tables["links"],
    )
    if changes is not None:
        ids = changes.registry["user_id"].unique().implode()
        changes = dataclasses.replace(changes, registry=new_state.user_ids.filter(pl.col("user_id").is_in(ids)))
    return RunResult(resolution=resolution, state=new_state, run=run_row, events=events, changes=changes)
