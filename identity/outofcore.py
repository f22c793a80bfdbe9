"""`resolve` for observations larger than memory: the same tables, kept in a DuckDB database file.

`resolve` holds every string of the observations in memory (1.0 GB of polars columns at 10M rows, so about 10 GB at
100M before any work). Here DuckDB holds them instead, in a database file it can spill from, and does the string
work as set operations: it normalizes nothing itself (each batch goes through `normalize_observations`, so the rules
are the same code), but it translates hashed phones, numbers records and identity keys in text order, and lays the
users' ids beside those strings for the output tables. Only integers come into memory (per link: record, observed
key, link key, priority, time), on which the shared values, the link order, the greedy union and the anchors are
computed by the same functions `resolve` uses, and then the user ids (one string per user, gathered by number).
The result equals `resolve`'s, table for table (tested on random graphs); there is no state, no incremental hints
and no links table here.

Steps and where they run: docs/identity.md, "Out of core".
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from identity.config import IdentityConfig
from identity.connection import connect, copy_to_csv
from identity.engine import greedy_union
from identity.files import csv_problem, open_bytes, utf8_problem
from identity.memory import for_large_arrays
from identity.normalize import (
    BLOCK_REASONS,
    INPUT_COLUMNS,
    OUTPUT_COLUMNS,
    ObservationError,
    normalize_observations,
    split_observations,
)
from identity.privacy import keyed_hash_sql
from identity.resolution import (
    _NULL_TIME,
    HASH_TYPES,
    USERS_SCHEMA,
    PhaseClock,
    _as_time,
    _link_order,
    anchor_priority,
    priority_ranks,
    root_anchors,
    shared_link_keys,
    unique_classes,
    user_id_order,
    without_shared,
)
from identity.state import ZSTD_COLUMNS, create_table_from_query, create_table_sql, holds_zstd

OUTPUT_TABLES = ("observations", "record_map", "id_map", "users", "rejected_links", "blocked_values")
# The intermediate tables are temporary: in memory as far as DuckDB's memory limit allows, spilled beyond it, never
# written to the database file (written, the numbering at 30M took 31.6 s instead of 21.8), gone with the connection
_WORK = "temp.main"
# ...except the two numbered tables, which hold every record and every identity key with their strings and are read
# until the end: at 100M links DuckDB spilled them to its temporary files to make room for the integers' joins;
# in the file they are written once and leave memory for free (100M: 433-465 s against 501-504 s; docs/identity.md)
RECORDS, OBSERVED = "_oneid_records", "_oneid_observed"
_NUMBERED = (RECORDS, OBSERVED)
# with `quarantine`: the rows set aside for breaking the contract, their values as they were, as text
QUARANTINE_TABLE = "quarantine"
QUARANTINE_COLUMNS = [
    ("file", "varchar"), ("row", "bigint"), ("column", "varchar"), ("reason", "varchar"),
    *((name, "varchar") for name in (*INPUT_COLUMNS, "strength")),
]
# DuckDB's memory limit while numpy works on the integers: DuckDB is idle then, and a low limit makes it give back
# the memory it holds as a cache
IDLE_DUCKDB_MEMORY = "256MB"
_DIGEST_FUNCTIONS = {"phone_md5": (32, "md5"), "phone_sha256": (64, "sha256")}


@dataclass
class OutOfCoreResult:
    """What `resolve_out_of_core` reports; the tables themselves are in the database (OUTPUT_TABLES)."""

    database: str
    stats: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    # the process's peak resident memory so far (MB) at the end of each phase: where the peak was reached
    peak_mb: dict[str, float] = field(default_factory=dict)


def copy_table(database: str | Path, table: str, path: str | Path) -> None:
    """One of OUTPUT_TABLES as a CSV file (with a header), written by DuckDB without loading it into memory."""
    if table not in OUTPUT_TABLES:
        raise ValueError(f"not an output table: {table}")
    with connect(database, read_only=True) as con:
        copy_to_csv(con, table, path)


def _batches(
    observations: pl.DataFrame | str | Path | Sequence[str | Path], rows: int
) -> Iterator[tuple[str, int, pl.DataFrame]]:
    """(where the batch comes from, for error messages: "observations" or the file; its first row's 0-based
    position there; the batch). A file is Parquet when its name ends in .parquet, otherwise a CSV."""
    if isinstance(observations, pl.DataFrame):
        for offset in range(0, observations.height, rows):
            yield "observations", offset, observations.slice(offset, rows)
        return
    paths = [observations] if isinstance(observations, (str, Path)) else list(observations)
    # a pattern (`folder/*.parquet`) stands for its files, in name order
    paths = [name for path in paths for name in (sorted(glob.glob(str(path))) if _is_pattern(path) else [path])]
    if not paths:
        raise FileNotFoundError(f"no files match {observations}")
    for path in paths:
        if str(path).lower().endswith(".parquet"):
            yield from _parquet_batches(path, rows)
        else:
            yield from _csv_batches(path, rows)


def _parquet_batches(path: str | Path, rows: int) -> Iterator[tuple[str, int, pl.DataFrame]]:
    # Read by polars a slice at a time (it reads only the row groups a slice needs). pyarrow's batches, converted,
    # took 1.3-5.3 s for 10M rows against 0.3-0.5 s: its allocator (mimalloc) returns freed memory to the kernel,
    # so every batch was zeroed afresh, and each was then copied into polars' string views.
    scan = pl.scan_parquet(path)
    try:
        total = scan.select(pl.len()).collect().item()
    except pl.exceptions.PolarsError as error:
        raise ValueError(f"{path}: not a readable Parquet file ({error})") from error
    for offset in range(0, total, rows):
        try:
            batch = scan.slice(offset, rows).collect()
        except pl.exceptions.PolarsError as error:
            last = min(offset + rows, total)
            raise ValueError(f"{path} rows {offset + 1}-{last}: unreadable ({error})") from error
        yield str(path), offset, batch


def _csv_batches(path: str | Path, rows: int) -> Iterator[tuple[str, int, pl.DataFrame]]:
    """A UTF-8 CSV (gzipped or not, with or without a byte-order mark), every column as text, streamed by polars
    in batches of `rows`: the parser of `read_table`, so the same cells as in memory. Other encodings are refused
    (found by a pass over the file once polars has failed on it): a GB18030 file must be saved as UTF-8 first, as
    decoding it on the way would mean holding it or a temporary copy."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    offset = 0
    try:
        for batch in pl.scan_csv(path, infer_schema=False).collect_batches(chunk_size=rows):
            yield str(path), offset, batch
            offset += batch.height
    except pl.exceptions.NoDataError:
        raise ValueError(f"{path}: empty file (a CSV needs at least its header row)") from None
    except pl.exceptions.PolarsError as error:
        not_utf8 = utf8_problem(path)
        if not_utf8:
            raise ValueError(
                f"{path}: not UTF-8 ({not_utf8}); out of core reads CSV in UTF-8 only: save it as UTF-8 (a "
                "GB18030 file can be resolved in memory as it is)"
            ) from None
        with open_bytes(path) as handle:
            problem = csv_problem(handle)
        raise ValueError(f"{path}: {problem or str(error).strip().splitlines()[0]}") from None


def _is_pattern(path: str | Path) -> bool:
    return any(char in str(path) for char in "*?[")


def _sql_list(values: Sequence[str]) -> str:
    return "(" + ", ".join("'" + value.replace("'", "''") + "'" for value in values) + ")"


@for_large_arrays
def resolve_out_of_core(
    observations: pl.DataFrame | str | Path | Sequence[str | Path],
    database: str | Path,
    config: IdentityConfig | None = None,
    *,
    id_key: bytes | None = None,
    engine: str = "auto",
    batch_rows: int = 2_000_000,
    memory_limit: str | None = None,
    threads: int | None = None,
    quarantine: bool = False,
) -> OutOfCoreResult:
    """Resolve observations (Parquet or UTF-8 CSV files, or a DataFrame) into the tables OUTPUT_TABLES of
    `database`.

    The tables replace any of those names already there and equal `resolve(observations, config,
    id_key=id_key)`'s, in the same row order. `batch_rows` observations are normalized at a time;
    `memory_limit` (e.g. "6GB") and `threads` are DuckDB's settings, which decide how much it keeps in memory
    before spilling to a temporary directory beside the database.

    `quarantine`: rows that break the input contract (`identity.normalize.contract_violations`) go to the table
    QUARANTINE_TABLE (their file, 0-based row in it, column, reason and values as text) and the others are
    resolved, instead of the run stopping at the first such row; the tables then equal `resolve` of the others.
    """
    config = config or IdentityConfig()
    lap = PhaseClock()

    with connect(database) as con:
        if memory_limit:
            con.execute(f"set memory_limit = '{memory_limit}'")
        if threads:
            con.execute(f"set threads = {int(threads)}")
        try:
            for table in (*OUTPUT_TABLES, *_NUMBERED, QUARANTINE_TABLE):
                con.execute(f"drop table if exists {table}")
            _load_normalized(con, observations, config, batch_rows, quarantine)
            lap("normalize")
            type_rank, source_rank = _translate_and_number(con, config)
            lap("translate")
            # handed over in a list, so that no reference stays here: _resolve_integers lets go of each array
            # as soon as it has what it needs of it
            ints = [_link_integers(con, type_rank, source_rank)]
            lap("integers")
            # DuckDB is idle while numpy works: with a low limit meanwhile it gives back the memory it holds
            (duckdb_memory,) = con.execute("select current_setting('memory_limit')").fetchall()[0]
            con.execute(f"set memory_limit = '{IDLE_DUCKDB_MEMORY}'")
            outcome = _resolve_integers(con, ints.pop(), config, type_rank, source_rank, engine, lap)
            con.execute(f"set memory_limit = '{duckdb_memory}'")
            stats = _write_outputs(con, outcome, id_key)
            for column in ("_row", "_rh", "_oh"):
                con.execute(f"alter table observations drop column {column}")
        except BaseException:
            # no half-made tables for anyone to read: a failed run leaves none of the output tables
            for table in (*OUTPUT_TABLES, *_NUMBERED, QUARANTINE_TABLE):
                con.execute(f"drop table if exists {table}")
            raise
        for table in _NUMBERED:
            con.execute(f"drop table {table}")
        con.execute("checkpoint")
        lap("outputs")
    return OutOfCoreResult(database=str(database), stats=stats, timings=lap.seconds, peak_mb=lap.peak_mb)


def _load_normalized(con, observations, config: IdentityConfig, batch_rows: int, quarantine: bool) -> None:
    """`observations`: the normalized rows in input order, with their row number `_row` and 64-bit hashes of
    their record (`_rh`) and observed key (`_oh`), on which the integers are joined instead of on the strings.
    With `quarantine`, the rows that break the contract are in QUARANTINE_TABLE instead."""
    zstd = _zstd_columns(con, "observations")
    columns = list(zip(
        (*OUTPUT_COLUMNS, "_row", "_rh", "_oh"),
        ("varchar",) * 6 + ("timestamp", "varchar", "boolean", "varchar", "bigint", "ubigint", "ubigint"),
    ))
    con.execute(create_table_sql("main", "observations", columns, zstd))
    if quarantine:
        con.execute(create_table_sql("main", QUARANTINE_TABLE, QUARANTINE_COLUMNS))
    offset = 0
    # the next batch is read and normalized (polars) while DuckDB stores this one: both let go of the GIL
    with ThreadPoolExecutor(max_workers=1) as pool:
        batches = _batches(observations, batch_rows)
        upcoming = pool.submit(_next_normalized, batches, config, quarantine)
        while (normalized := upcoming.result()) is not None:
            upcoming = pool.submit(_next_normalized, batches, config, quarantine)
            normalized, quarantined = normalized
            if quarantined is not None and quarantined.height:
                con.register("_quarantined", quarantined.to_arrow())
                con.execute(f"insert into {QUARANTINE_TABLE} by name select * from _quarantined")
                con.unregister("_quarantined")
            con.register("_batch", normalized.with_columns(
                _row=pl.int_range(offset, offset + normalized.height, dtype=pl.Int64)
            ).to_arrow())
            offset += normalized.height
            con.execute(
                "insert into observations by name select *, hash(source, record_id) as _rh, "
                "hash(id_type, scope, id_value) as _oh from _batch"
            )
            con.unregister("_batch")


def _next_normalized(
    batches: Iterator[tuple[str, int, pl.DataFrame]], config: IdentityConfig, quarantine: bool
) -> tuple[pl.DataFrame, pl.DataFrame | None] | None:
    """The next batch normalized, and with `quarantine` its rows that break the contract (as QUARANTINE_COLUMNS,
    rows counted in their file); None after the last."""
    where, offset, batch = next(batches, (None, 0, None))
    if batch is None:
        return None
    try:
        quarantined = None
        if quarantine:
            batch, quarantined = split_observations(batch)
            # inserted by name: a contract column the file lacks (observed_at, strength) is left null
            quarantined = quarantined.with_columns(file=pl.lit(where), row=pl.col("row") + offset)
        return normalize_observations(batch, config), quarantined
    except ObservationError as error:
        # the row counted in the whole file, not in this batch
        raise error.in_source(where, offset) from error


def _translate_and_number(con, config: IdentityConfig) -> tuple[dict[str, int], dict[str, int]]:
    """Hashed phones translated (`_WORK.translated`: row, phone; the rows' reasons updated in `observations`),
    then records and the observed keys of usable rows numbered 0..n-1 in text order. Returns the type and
    source priority ranks, as `resolve` makes them.

    The numbers are the tables' `rowid`s: each table is stored sorted, and a table stored in a query's order
    numbers its rows in that order. A sort alone is cheaper than a window's `row_number()` (9.3 s against 11.8
    at 30M observed keys), and the output tables can then be laid beside these positionally, without joins."""
    w = _WORK
    con.execute(f"""
        create table {RECORDS} as
        select distinct source, record_id, _rh from observations order by source, record_id
    """)
    # every id_type, and whether any of its rows is usable, in one scan
    type_usable = dict(con.execute("select id_type, bool_or(usable) from observations group by 1").fetchall())
    hash_types = [name for name in HASH_TYPES if type_usable.get(name)]
    con.execute("create temp table translated (_row bigint, link_value varchar)")
    if hash_types:
        lengths = sorted({_DIGEST_FUNCTIONS[name][0] for name in hash_types})
        con.execute(f"""
            create temp table wanted as select distinct id_value as digest from observations
            where usable and id_type in {_sql_list(HASH_TYPES)} and length(id_value) in ({", ".join(map(str, lengths))})
        """)
        con.execute(f"""
            create temp table plain as
            select distinct id_value as phone from observations where id_type = 'phone' and id_value is not null
        """)
        matches = " union all ".join(
            f"select w.digest, p.phone from {w}.plain p join {w}.wanted w on {function}(p.phone) = w.digest"
            for length, function in _DIGEST_FUNCTIONS.values()
            if length in lengths
        )
        con.execute(f"create temp table digest_phone as select digest, min(phone) as phone from ({matches}) group by 1")
        con.execute(f"""
            insert into {w}.translated
            select o._row, d.phone from observations o join {w}.digest_phone d on o.id_value = d.digest
            where o.usable and o.id_type in {_sql_list(HASH_TYPES)}
        """)
        # the hash of a blocked phone is as blocked as the phone (a phone's reason depends on its value only);
        # only those rows are updated, the others stay usable as they are
        con.execute(f"""
            update observations set unusable_reason = r.reason, usable = false
            from (
                select t._row, p.reason from {w}.translated t join (
                    select id_value, min(unusable_reason) as reason from observations
                    where id_type = 'phone' and unusable_reason is not null
                      and id_value in (select phone from {w}.digest_phone)
                    group by 1
                ) p on p.id_value = t.link_value
            ) r
            where observations._row = r._row
        """)
    # A link key differs from its observed key only for a translated hash: its link key (phone, '', p) is the
    # observed key of the plain phone p, which is usable whenever the translated row still is. So the observed
    # keys, numbered once, number the link keys too.
    con.execute(f"""
        create table {OBSERVED} as
        select distinct id_type, scope, id_value, _oh from observations where usable order by id_type, scope, id_value
    """)
    types = list(type_usable)
    sources = [row[0] for row in con.execute(f"select distinct source from {RECORDS}").fetchall()]
    type_rank = priority_ranks(config.id_type_priority, types + (["phone"] if hash_types else []))
    source_rank = priority_ranks(config.source_priority, sources)
    for table, column, ranks in (("type_priority", "id_type", type_rank), ("source_priority", "source", source_rank)):
        frame = pl.DataFrame({column: list(ranks), "priority": list(ranks.values())}, schema={column: pl.String,
                                                                                               "priority": pl.Int64})
        _create_from_frame(con, table, frame, temporary=True)
    return type_rank, source_rank


@dataclass
class _Links:
    """Per usable observation (in no particular order): its record, observed key, link key (the observed key of
    the phone a translated hash stands for), the order prefix (strength, type priority, source priority) and
    time, and its row in `observations`."""

    rid: np.ndarray
    okey: np.ndarray
    lkey: np.ndarray
    prefix: np.ndarray
    time: np.ndarray
    row: np.ndarray
    n_records: int


_LINK_COLUMNS = ("rid", "okey", "lkey", "prefix", "time", "row")


def link_join_conditions(on_hashes: bool) -> tuple[str, str]:
    """The join of an observation `o` to its record `r` and to its observed key `ok`: on their 64-bit hashes, or
    on the strings themselves."""
    if on_hashes:
        return "r._rh = o._rh", "ok._oh = o._oh"
    return (
        "r.source = o.source and r.record_id = o.record_id",
        "ok.id_type = o.id_type and ok.scope = o.scope and ok.id_value = o.id_value",
    )


def _link_integers(con, type_rank: dict[str, int], source_rank: dict[str, int]) -> _Links:
    """Streams the integers of every usable observation out of DuckDB into preallocated arrays, so that neither
    side holds a second copy of them all.

    Joined on the hashes first: every usable row meets its own record and key, so a row more than there are
    usable rows means two distinct records (or keys) share a hash, and the join starts over on the strings.
    Counting the distinct hashes up front instead took 8.1-8.5 s at 100M links."""
    w = _WORK
    (count,) = con.execute("select count(*) from observations where usable").fetchall()[0]
    arrays = {name: np.empty(count, dtype=np.int64) for name in _LINK_COLUMNS}
    con.execute(f"""
        create temp table translated_keys as
        select t._row, ok.rowid as k from {w}.translated t
        join {OBSERVED} ok on ok.id_type = 'phone' and ok.scope = '' and ok.id_value = t.link_value
    """)
    for on_hashes in (True, False):
        if _stream_link_integers(con, type_rank, source_rank, link_join_conditions(on_hashes), arrays, count):
            break
    else:
        raise RuntimeError(f"expected {count} link rows from DuckDB, got more joining on the strings")
    (n_records,) = con.execute(f"select count(*) from {RECORDS}").fetchall()[0]
    return _Links(**arrays, n_records=n_records)


def _stream_link_integers(con, type_rank, source_rank, conditions: tuple[str, str], arrays, count: int) -> bool:
    """Fills `arrays` with the link integers joined on `conditions`; False as soon as the join gives more than
    `count` rows."""
    w = _WORK
    on_record, on_key = conditions
    reader = con.sql(f"""
        select r.rowid as rid, ok.rowid as okey, coalesce(tk.k, ok.rowid) as lkey,
               ((case when o.strength = 'weak' then 1 else 0 end) * {len(type_rank)} + tp.priority)
                   * {len(source_rank)} + sp.priority as prefix,
               coalesce(epoch_us(o.observed_at), {_NULL_TIME}) as time, o._row as row
        from observations o
        join {RECORDS} r on {on_record}
        join {OBSERVED} ok on {on_key}
        left join {w}.translated_keys tk on tk._row = o._row
        join {w}.type_priority tp on tp.id_type = o.id_type
        join {w}.source_priority sp on sp.source = o.source
        where o.usable
    """).to_arrow_reader(1_000_000)
    at = 0
    for batch in reader:
        n = batch.num_rows
        if at + n > count:
            reader.close()
            return False
        for name in _LINK_COLUMNS:
            arrays[name][at : at + n] = batch.column(name).to_numpy()
        at += n
    if at != count:
        raise RuntimeError(f"expected {count} link rows from DuckDB, got {at}")
    return True


def _create_from_frame(
    con, table: str, frame: pl.DataFrame, query: str = "select * from _frame", temporary: bool = False
) -> None:
    """The table `table` (a work table in `_WORK` if `temporary`) made by `query` from the frame, which the query
    sees as `_frame`. An output table's random text is stored as `_ZSTD_COLUMNS` and `_UNCOMPRESSED_COLUMNS` say."""
    con.register("_frame", frame.to_arrow())
    try:
        if temporary:
            con.execute(f"create temp table {table} as {query}")
        else:
            create_table_from_query(
                con, "main", table, query, _zstd_columns(con, table), _UNCOMPRESSED_COLUMNS.get(table, ())
            )
    finally:
        con.unregister("_frame")


# Random text (ids, user ids, hashes) is stored with zstd where it is read again in the run: DuckDB's default for
# text (dict_fsst) spends more time on it (see `identity.state.ZSTD_COLUMNS`)
_ZSTD_COLUMNS = {"observations": ZSTD_COLUMNS["observations"]}
# The tables written last are stored as they are, trading disk for time: with zstd the outputs phase took 21.9-23.2
# s at 30M (16.9-17.7 s without) and 79.5-83.6 s at 100M (74.7 and 81.4 s without), the file 8.5 GB at 100M
# (10.3 GB without)
_UNCOMPRESSED_COLUMNS = {
    "record_map": ("record_id", "user_id"),
    "id_map": ("id_value", "user_id"),
    "users": ("user_id", "anchor"),
}


def _zstd_columns(con, table: str) -> tuple[str, ...]:
    """The columns of `table` to store with zstd: none in a database file made for a DuckDB that cannot read them."""
    return _ZSTD_COLUMNS.get(table, ()) if holds_zstd(con) else ()


@dataclass
class _Outcome:
    """What the output tables need of the resolution, as integers: users (anchored ones first, then the bare
    records), each record's and each kept observed key's user, and the refused links in link order."""

    n_records: int
    n_links: int
    n_identities: int
    class_types: list[str]
    anchor_okey: np.ndarray  # per anchored user: the observed key of its anchor
    anchor_time: np.ndarray
    anchored_identities: np.ndarray
    bare_records: np.ndarray  # per bare user: its record
    sizes: np.ndarray  # per user: its records
    record_user: np.ndarray
    kept_observed: np.ndarray  # per kept observed key (in text order): its number in `observed`
    observed_user: np.ndarray
    refused: np.ndarray  # positions in link order
    refused_rid: np.ndarray
    refused_okey: np.ndarray
    refused_user: np.ndarray
    refused_conflicting: np.ndarray
    refused_class: np.ndarray


def _resolve_integers(con, links: _Links, config, type_rank, source_rank, engine, lap) -> _Outcome:
    """Shared values, link order, greedy union and anchors, on integers only."""
    w = _WORK
    # The link keys are the observed keys some link stands for, made dense in the same (text) order
    n_observed_keys = int(links.okey.max()) + 1 if len(links.okey) else 0
    is_link_key = np.zeros(n_observed_keys, dtype=bool)
    is_link_key[links.lkey] = True
    link_key_okey = np.flatnonzero(is_link_key)
    lkey = (np.cumsum(is_link_key) - 1)[links.lkey]
    del is_link_key
    # per observed key (numbered in text order, so each (id_type, scope) is one run of keys): type rank and class
    runs = con.execute(
        f"select id_type, scope, min(rowid), count(*) from {OBSERVED} group by 1, 2 order by 3"
    ).fetchall()
    class_of = unique_classes([(kind, scope) for kind, scope, _, _ in runs], type_rank, config.unique_types)
    lengths = [length for *_, length in runs]
    key_rank = np.repeat(np.array([type_rank[kind] for kind, *_ in runs], dtype=np.int64), lengths)[link_key_okey]
    key_class = np.repeat(np.array([class_of.get((kind, scope), -1) for kind, scope, *_ in runs], dtype=np.int64),
                          lengths)[link_key_okey]
    class_types = [kind for kind, _ in sorted(class_of, key=class_of.get)]

    rid, n_records = links.rid, links.n_records
    row_class = key_class[lkey]
    held = np.flatnonzero(row_class >= 0)
    shared = shared_link_keys(rid, lkey, held, row_class[held], config.shared_threshold)
    del row_class, held
    kept, iid, oid, kept_keys, kept_observed = without_shared(lkey, links.okey, shared, len(key_rank))
    del lkey
    # per identity what the rest needs of its key, so that the per-key arrays are let go before the link order
    n_identities, n_observed = len(kept_keys), len(kept_observed)
    node_rank, identity_class, identity_okey = key_rank[kept_keys], key_class[kept_keys], link_key_okey[kept_keys]
    del key_rank, key_class, link_key_okey, kept_keys
    if kept is not None:
        _create_from_frame(con, "shared_rows", pl.DataFrame({"_row": links.row[~kept]}), temporary=True)
        con.execute(f"""
            update observations set unusable_reason = 'shared', usable = false
            where _row in (select _row from {w}.shared_rows)
        """)
        rid, prefix, link_time = rid[kept], links.prefix[kept], links.time[kept]
    else:
        prefix, link_time = links.prefix, links.time
    del links, kept
    lap("shared")

    first_time = np.full(n_identities, _NULL_TIME, dtype=np.int64)
    np.minimum.at(first_time, iid, link_time)
    observed_iid = np.empty(n_observed, dtype=np.int64)
    observed_iid[oid] = iid
    # handed over without a reference kept here, so that _link_order can let them go once it has its sort keys.
    # (Working out the two arrays above in a second thread meanwhile gained nothing at 100M links: 36.2 s for
    # this phase, against 35.3-37.1 s; polars' sort keeps both cores busy.)
    keys = {"prefix": prefix, "time": link_time}
    del prefix, link_time
    link_rows = _link_order(
        keys.pop("prefix"), 2 * len(type_rank) * len(source_rank), keys.pop("time"), rid, oid, iid, n_records,
        n_observed, n_identities,
    )
    # the observed key of a link is wanted only for the refused ones: gathered for those alone after the union
    link_rid, link_iid = rid[link_rows], iid[link_rows]
    del rid, iid
    node_class = np.full(n_records + n_identities, -1, dtype=np.int64)
    node_class[n_records:] = identity_class
    del identity_class
    lap("order")

    roots, rejected, _ = greedy_union(
        n_records + n_identities, link_rid, link_iid + n_records, node_class, len(class_types), engine=engine
    )
    # what the outputs need of the links is the refused ones; the rest is let go before DuckDB takes memory back
    n_links, refused = len(link_rid), np.flatnonzero(rejected >= 0)
    refused_rid, refused_oid, refused_iid = link_rid[refused], oid[link_rows[refused]], link_iid[refused]
    refused_class = rejected[refused]
    del node_class, link_rid, link_iid, rejected, oid, link_rows
    lap("link")

    priority, position = anchor_priority(first_time, node_rank)
    record_root, node_root = roots[:n_records], roots[n_records:]
    anchored_roots, anchor_node, identities_of_root = root_anchors(node_root, position, priority, len(roots))
    del priority, position, node_rank
    anchor_okey, anchor_time = identity_okey[anchor_node], first_time[anchor_node]
    del anchor_node, first_time, identity_okey
    bare_records = np.flatnonzero(identities_of_root[record_root] == 0)
    n_users = len(anchored_roots) + len(bare_records)
    user_of_root = np.full(len(roots), -1, dtype=np.int64)
    user_of_root[np.concatenate([anchored_roots, record_root[bare_records]])] = np.arange(n_users, dtype=np.int64)
    record_user = user_of_root[record_root]
    observed_user = user_of_root[node_root][observed_iid]
    refused_user, refused_conflicting = record_user[refused_rid], user_of_root[node_root[refused_iid]]
    del roots, record_root, node_root, user_of_root, observed_iid
    sizes = np.bincount(record_user, minlength=n_users)
    return _Outcome(
        n_records=n_records,
        n_links=n_links,
        n_identities=n_identities,
        class_types=class_types,
        anchor_okey=anchor_okey,
        anchor_time=anchor_time,
        anchored_identities=identities_of_root[anchored_roots],
        bare_records=bare_records,
        sizes=sizes,
        record_user=record_user,
        kept_observed=kept_observed,
        observed_user=observed_user,
        refused=refused,
        refused_rid=refused_rid,
        refused_okey=kept_observed[refused_oid],
        refused_user=refused_user,
        refused_conflicting=refused_conflicting,
        refused_class=refused_class,
    )


def _write_outputs(con, out: _Outcome, id_key: bytes | None) -> dict:
    """The output tables from the integers and the strings in DuckDB; returns the stats.

    The user ids are computed in DuckDB (its sha256 runs on every core) and fetched, one per user (17M at 100M
    links); each record's and identity's id is then gathered by number in polars and laid beside `records` and
    `observed`, stored in number order, by a positional join. At 100M links record_map and id_map took 25.6 and
    33.3 s so, against 37.4 and 39.8 s joined on the numbers and sorted back into order; most of what is left is
    DuckDB compressing the strings it writes."""
    w = _WORK
    n_anchored, n_bare = len(out.anchor_okey), len(out.bare_records)
    none = np.full(n_bare, -1, dtype=np.int64)
    _create_from_frame(con, "user_rows", pl.DataFrame({
        "u": np.arange(n_anchored + n_bare, dtype=np.int64),
        "okey": np.concatenate([out.anchor_okey, none]),
        "rid": np.concatenate([np.full(n_anchored, -1, dtype=np.int64), out.bare_records]),
    }), temporary=True)
    # (Read positionally, each row marked with its user's number, the anchors took as long: 18.5 s at 100M links
    # against 17.5 s joined.)
    expression, params = keyed_hash_sql(id_key, "anchor")
    users = con.sql(f"""
        select 'u_' || substr({expression}, 1, 16) as user_id, anchor
        from (
            select u.u, coalesce(ok.id_type || chr(9) || ok.scope || chr(9) || ok.id_value,
                                 r.source || '/' || r.record_id) as anchor
            from {w}.user_rows u
            left join {OBSERVED} ok on ok.rowid = u.okey
            left join {RECORDS} r on r.rowid = u.rid
        )
        order by u
    """, params=params or None).pl().rechunk()
    con.execute(f"drop table {w}.user_rows")
    user_ids = users["user_id"]
    by_id = user_id_order(user_ids)
    _create_from_frame(con, "users", users.with_columns(
        first_seen=_as_time(np.concatenate([out.anchor_time, np.full(n_bare, _NULL_TIME)])),
        identities=pl.Series(np.concatenate([out.anchored_identities, np.zeros(n_bare, np.int64)])),
        records=pl.Series(out.sizes),
    )[by_id].select(list(USERS_SCHEMA)).cast(USERS_SCHEMA))
    del users, by_id
    _create_from_frame(con, "record_map", pl.DataFrame({"user_id": user_ids.gather(out.record_user)}),
                       f"select r.source, r.record_id, x.user_id from {RECORDS} r positional join _frame x")
    # a kept observed key's user; null for the keys that were shared (which are not in id_map)
    (n_observed,) = con.execute(f"select count(*) from {OBSERVED}").fetchall()[0]
    user_of_key = pl.Series(np.full(n_observed, -1, dtype=np.int64)).scatter(out.kept_observed, out.observed_user)
    _create_from_frame(
        con, "id_map", pl.DataFrame({"user_id": user_ids.gather(user_of_key.set(user_of_key < 0, None))}),
        f"""select o.id_type, o.scope, o.id_value, x.user_id from {OBSERVED} o positional join _frame x
            where x.user_id is not null""",
    )
    del user_of_key
    _create_from_frame(con, "rejected_links", pl.DataFrame({
        "n": out.refused,
        "rid": out.refused_rid,
        "k": out.refused_okey,
        "user_id": user_ids.gather(out.refused_user),
        "conflicting_user_id": user_ids.gather(out.refused_conflicting),
        "reason": "unique_conflict:" + pl.Series(out.class_types, dtype=pl.String).gather(out.refused_class),
    }), f"""
        select r.source, r.record_id, o.id_type, o.scope, o.id_value, x.user_id, x.conflicting_user_id, x.reason
        from _frame x join {RECORDS} r on r.rowid = x.rid join {OBSERVED} o on o.rowid = x.k
        order by x.n
    """)
    con.execute(f"""
        create table blocked_values as
        select id_type, scope, id_value, unusable_reason as reason, count(*)::bigint as records
        from (
            select distinct id_type, scope, id_value, unusable_reason, source, record_id from observations
            where unusable_reason in {_sql_list(BLOCK_REASONS)}
        )
        group by all
        order by id_type nulls first, scope nulls first, id_value nulls first, reason nulls first
    """)
    sizes = out.sizes
    histogram = np.bincount(out.anchored_identities[sizes[:n_anchored] > 0])
    bare_with_records = int((sizes[n_anchored:] > 0).sum())
    by_identities = {int(k): int(v) for k, v in enumerate(histogram) if v}
    if bare_with_records:
        by_identities = {0: bare_with_records, **by_identities}
    ((values_blocked, values_shared),) = con.execute(
        "select count(*) filter (reason <> 'shared'), count(*) filter (reason = 'shared') from blocked_values"
    ).fetchall()
    return {
        "records": out.n_records,
        "links": out.n_links,
        "identities": out.n_identities,
        "users": int((sizes > 0).sum()),
        "largest_user_size": int(sizes.max()) if len(sizes) else 0,
        "users_by_identity_count": by_identities,
        "links_rejected": len(out.refused),
        "values_blocked": int(values_blocked),
        "values_shared": int(values_shared),
    }
