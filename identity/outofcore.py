"""`resolve` for observations larger than memory: the same tables, kept in a DuckDB database file.

`resolve` holds every string of the observations in memory (about 11 GB of polars columns at 100M rows before
any work). Here DuckDB holds them instead, in a database file it can spill from, and does the string work as set
operations: it normalizes nothing itself (each batch goes through `normalize_observations`, so the rules are the
same code), but it translates hashed phones, numbers records and identity keys in text order, and joins the
integers back to strings for the output tables. Only integers come into memory (per link: record, observed
key, link key, priority, time), and on those the shared values, the link order, the greedy union and the
anchors are computed by the same functions `resolve` uses. The result equals `resolve`'s, table for table
(tested on random graphs); there is no state, no incremental hints and no links table here.

Steps and where they run: docs/identity.md, "Out of core".
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from identity.config import IdentityConfig
from identity.engine import greedy_union
from identity.normalize import BLOCK_REASONS, OUTPUT_COLUMNS, normalize_observations
from identity.privacy import keyed_hash_sql
from identity.resolution import (
    _NULL_TIME,
    HASH_TYPES,
    _link_order,
    anchor_priority,
    priority_ranks,
    root_anchors,
    shared_link_keys,
    unique_classes,
    without_shared,
)

OUTPUT_TABLES = ("observations", "record_map", "id_map", "users", "rejected_links", "blocked_values")
_WORK = "_oneid_work"  # the intermediate tables, dropped at the end
_DIGEST_FUNCTIONS = {"phone_md5": (32, "md5"), "phone_sha256": (64, "sha256")}


@dataclass
class OutOfCoreResult:
    """What `resolve_out_of_core` reports; the tables themselves are in the database (OUTPUT_TABLES)."""

    database: str
    stats: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def _batches(observations: pl.DataFrame | str | Path | Sequence[str | Path], rows: int) -> Iterator[pl.DataFrame]:
    if isinstance(observations, pl.DataFrame):
        for offset in range(0, observations.height, rows):
            yield observations.slice(offset, rows)
        return
    import pyarrow.parquet as pq

    paths = [observations] if isinstance(observations, (str, Path)) else list(observations)
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield pl.from_arrow(batch)


def _sql_list(values: Sequence[str]) -> str:
    return "(" + ", ".join("'" + value.replace("'", "''") + "'" for value in values) + ")"


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
) -> OutOfCoreResult:
    """Resolve observations (Parquet files, or a DataFrame) into the tables OUTPUT_TABLES of `database`.

    The tables replace any of those names already there and equal `resolve(observations, config,
    id_key=id_key)`'s, in the same row order. `batch_rows` observations are normalized at a time;
    `memory_limit` (e.g. "6GB") and `threads` are DuckDB's settings, which decide how much it keeps in memory
    before spilling to a temporary directory beside the database.
    """
    import duckdb

    config = config or IdentityConfig()
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    with duckdb.connect(str(database)) as con:
        if memory_limit:
            con.execute(f"set memory_limit = '{memory_limit}'")
        if threads:
            con.execute(f"set threads = {int(threads)}")
        for table in OUTPUT_TABLES:
            con.execute(f"drop table if exists {table}")
        con.execute(f"drop schema if exists {_WORK} cascade")
        con.execute(f"create schema {_WORK}")
        _load_normalized(con, observations, config, batch_rows)
        lap("normalize")
        type_rank, source_rank = _translate_and_number(con, config)
        lap("translate")
        ints = _link_integers(con, type_rank, source_rank)
        lap("integers")
        stats = _resolve_integers(con, ints, config, type_rank, source_rank, id_key, engine, timings, lap)
        con.execute("alter table observations drop column _row")
        con.execute(f"drop schema {_WORK} cascade")
        con.execute("checkpoint")
        lap("outputs")
    return OutOfCoreResult(database=str(database), stats=stats, timings=timings)


def _load_normalized(con, observations, config: IdentityConfig, batch_rows: int) -> None:
    """`observations`: the normalized rows in input order, with their row number `_row`."""
    columns = ", ".join(
        f"{name} {kind}"
        for name, kind in zip(
            (*OUTPUT_COLUMNS, "_row"),
            ("varchar",) * 6 + ("timestamp", "varchar", "boolean", "varchar", "bigint"),
        )
    )
    con.execute(f"create table observations ({columns})")
    offset = 0
    for batch in _batches(observations, batch_rows):
        normalized = normalize_observations(batch, config).with_columns(
            _row=pl.int_range(offset, offset + batch.height, dtype=pl.Int64)
        )
        offset += batch.height
        con.register("_batch", normalized.to_arrow())
        con.execute("insert into observations by name select * from _batch")
        con.unregister("_batch")


def _translate_and_number(con, config: IdentityConfig) -> tuple[dict[str, int], dict[str, int]]:
    """Hashed phones translated (`_WORK.translated`: row, phone; the rows' reasons updated in `observations`),
    then records, observed keys and link keys numbered 0..n-1 in text order. Returns the type and source
    priority ranks, as `resolve` makes them."""
    w = _WORK
    con.execute(f"""
        create table {w}.records as
        select source, record_id, (row_number() over (order by source, record_id) - 1)::bigint as rid
        from (select distinct source, record_id from observations)
    """)
    hash_types = [row[0] for row in con.execute(
        f"select distinct id_type from observations where usable and id_type in {_sql_list(HASH_TYPES)}"
    ).fetchall()]
    con.execute(f"create table {w}.translated (_row bigint, link_value varchar)")
    if hash_types:
        lengths = sorted({_DIGEST_FUNCTIONS[name][0] for name in hash_types})
        con.execute(f"""
            create table {w}.wanted as select distinct id_value as digest from observations
            where usable and id_type in {_sql_list(HASH_TYPES)} and length(id_value) in ({", ".join(map(str, lengths))})
        """)
        con.execute(f"""
            create table {w}.plain as
            select distinct id_value as phone from observations where id_type = 'phone' and id_value is not null
        """)
        matches = " union all ".join(
            f"select w.digest, p.phone from {w}.plain p join {w}.wanted w on {function}(p.phone) = w.digest"
            for length, function in _DIGEST_FUNCTIONS.values()
            if length in lengths
        )
        con.execute(f"create table {w}.digest_phone as select digest, min(phone) as phone from ({matches}) group by 1")
        con.execute(f"""
            insert into {w}.translated
            select o._row, d.phone from observations o join {w}.digest_phone d on o.id_value = d.digest
            where o.usable and o.id_type in {_sql_list(HASH_TYPES)}
        """)
        # the hash of a blocked phone is as blocked as the phone (a phone's reason depends on its value only)
        con.execute(f"""
            update observations set unusable_reason = r.reason, usable = r.reason is null
            from (
                select t._row, p.reason from {w}.translated t left join (
                    select id_value, min(unusable_reason) as reason from observations
                    where id_type = 'phone' and id_value in (select phone from {w}.digest_phone) group by 1
                ) p on p.id_value = t.link_value
            ) r
            where observations._row = r._row
        """)
    con.execute(f"""
        create view {w}.link_rows as
        select o._row, o.source, o.record_id, o.id_type, o.scope, o.id_value, o.strength, o.observed_at,
               case when t._row is null then o.id_type else 'phone' end as link_type,
               coalesce(t.link_value, o.id_value) as link_value
        from observations o left join {w}.translated t on t._row = o._row
        where o.usable
    """)
    for table, kind, value, rows in (
        ("observed", "id_type", "id_value", "observations where usable"),
        ("link_keys", "link_type", "link_value", f"{w}.link_rows"),
    ):
        con.execute(f"""
            create table {w}.{table} as
            select {kind}, scope, {value}, (row_number() over (order by {kind}, scope, {value}) - 1)::bigint as k
            from (select distinct {kind}, scope, {value} from {rows})
        """)
    types = [row[0] for row in con.execute("select distinct id_type from observations").fetchall()]
    sources = [row[0] for row in con.execute(f"select distinct source from {w}.records").fetchall()]
    type_rank = priority_ranks(config.id_type_priority, types + (["phone"] if hash_types else []))
    source_rank = priority_ranks(config.source_priority, sources)
    for table, column, ranks in (("type_priority", "id_type", type_rank), ("source_priority", "source", source_rank)):
        frame = pl.DataFrame({column: list(ranks), "priority": list(ranks.values())}, schema={column: pl.String,
                                                                                               "priority": pl.Int64})
        con.register("_ranks", frame.to_arrow())
        con.execute(f"create table {w}.{table} as select * from _ranks")
        con.unregister("_ranks")
    return type_rank, source_rank


@dataclass
class _Links:
    """Per usable observation (in no particular order): its record, observed key, link key, the order prefix
    (strength, type priority, source priority) and time, and its row in `observations`."""

    rid: np.ndarray
    okey: np.ndarray
    lkey: np.ndarray
    prefix: np.ndarray
    time: np.ndarray
    row: np.ndarray
    n_records: int


_LINK_COLUMNS = ("rid", "okey", "lkey", "prefix", "time", "row")


def _link_integers(con, type_rank: dict[str, int], source_rank: dict[str, int]) -> _Links:
    """Streams the integers of every usable observation out of DuckDB into preallocated arrays, so that neither
    side holds a second copy of them all."""
    w = _WORK
    (count,) = con.execute(f"select count(*) from {w}.link_rows").fetchall()[0]
    arrays = {name: np.empty(count, dtype=np.int64) for name in _LINK_COLUMNS}
    reader = con.sql(f"""
        select r.rid, ok.k as okey, lk.k as lkey,
               ((case when l.strength = 'weak' then 1 else 0 end) * {len(type_rank)} + tp.priority)
                   * {len(source_rank)} + sp.priority as prefix,
               coalesce(epoch_us(l.observed_at), {_NULL_TIME}) as time, l._row as row
        from {w}.link_rows l
        join {w}.records r on r.source = l.source and r.record_id = l.record_id
        join {w}.observed ok on ok.id_type = l.id_type and ok.scope = l.scope and ok.id_value = l.id_value
        join {w}.link_keys lk on lk.link_type = l.link_type and lk.scope = l.scope and lk.link_value = l.link_value
        join {w}.type_priority tp on tp.id_type = l.id_type
        join {w}.source_priority sp on sp.source = l.source
    """).to_arrow_reader(1_000_000)
    at = 0
    for batch in reader:
        n = batch.num_rows
        for name in _LINK_COLUMNS:
            arrays[name][at : at + n] = batch.column(name).to_numpy()
        at += n
    if at != count:
        raise RuntimeError(f"expected {count} link rows from DuckDB, got {at}")
    (n_records,) = con.execute(f"select count(*) from {w}.records").fetchall()[0]
    return _Links(**arrays, n_records=n_records)


def _register(con, name: str, columns: dict[str, np.ndarray]) -> None:
    """A table `_WORK.name` of the given integer columns."""
    con.register("_arrays", pl.DataFrame(columns).to_arrow())
    con.execute(f"create or replace table {_WORK}.{name} as select * from _arrays")
    con.unregister("_arrays")


def _resolve_integers(con, links: _Links, config, type_rank, source_rank, id_key, engine, timings, lap) -> dict:
    w = _WORK
    # per link key (numbered in text order, so each (link_type, scope) is one run of keys): type rank and class
    runs = con.execute(
        f"select link_type, scope, min(k), count(*) from {w}.link_keys group by 1, 2 order by 3"
    ).fetchall()
    class_of = unique_classes([(kind, scope) for kind, scope, _, _ in runs], type_rank, config.unique_types)
    lengths = [length for *_, length in runs]
    key_rank = np.repeat(np.array([type_rank[kind] for kind, *_ in runs], dtype=np.int64), lengths)
    key_class = np.repeat(np.array([class_of.get((kind, scope), -1) for kind, scope, *_ in runs], dtype=np.int64),
                          lengths)
    class_types = [kind for kind, _ in sorted(class_of, key=class_of.get)]

    rid, lkey, n_records = links.rid, links.lkey, links.n_records
    row_class = key_class[lkey]
    held = np.flatnonzero(row_class >= 0)
    shared = shared_link_keys(rid, lkey, held, row_class[held], config.shared_threshold)
    del row_class, held
    n_keys = len(key_rank)
    kept, iid, oid, kept_keys, kept_observed = without_shared(lkey, links.okey, shared, n_keys)
    if kept is not None:
        _register(con, "shared_rows", {"_row": links.row[~kept]})
        con.execute(f"""
            update observations set unusable_reason = 'shared', usable = false
            where _row in (select _row from {w}.shared_rows)
        """)
        rid, prefix, link_time = rid[kept], links.prefix[kept], links.time[kept]
    else:
        prefix, link_time = links.prefix, links.time
    del links, kept
    lap("shared")

    n_identities, n_observed = len(kept_keys), len(kept_observed)
    link_rows = _link_order(
        prefix, 2 * len(type_rank) * len(source_rank), link_time, rid, oid, iid, n_records, n_observed, n_identities
    )
    del prefix
    first_time = np.full(n_identities, _NULL_TIME, dtype=np.int64)
    np.minimum.at(first_time, iid, link_time)
    del link_time
    node_rank = key_rank[kept_keys]
    node_class = np.full(n_records + n_identities, -1, dtype=np.int64)
    node_class[n_records:] = key_class[kept_keys]
    observed_iid = np.empty(n_observed, dtype=np.int64)
    observed_iid[oid] = iid
    link_rid, link_oid, link_iid = rid[link_rows], oid[link_rows], iid[link_rows]
    del rid, oid, iid, link_rows
    lap("order")

    roots, rejected, _ = greedy_union(
        n_records + n_identities, link_rid, link_iid + n_records, node_class, len(class_types), engine=engine
    )
    lap("link")

    priority, position = anchor_priority(first_time, node_rank)
    record_root, node_root = roots[:n_records], roots[n_records:]
    anchored_roots, anchor_node, identities_of_root = root_anchors(node_root, position, priority, len(roots))
    bare_records = np.flatnonzero(identities_of_root[record_root] == 0)
    n_users = len(anchored_roots) + len(bare_records)
    user_of_root = np.full(len(roots), -1, dtype=np.int64)
    user_of_root[np.concatenate([anchored_roots, record_root[bare_records]])] = np.arange(n_users, dtype=np.int64)
    record_user = user_of_root[record_root]
    node_user = user_of_root[node_root]
    sizes = np.bincount(record_user, minlength=n_users)
    none = np.full(len(bare_records), -1, dtype=np.int64)
    _register(con, "user_rows", {
        "u": np.arange(n_users, dtype=np.int64),
        "lkey": np.concatenate([kept_keys[anchor_node], none]),
        "rid": np.concatenate([np.full(len(anchored_roots), -1, dtype=np.int64), bare_records]),
        "first_time": np.concatenate([first_time[anchor_node], np.full(len(bare_records), _NULL_TIME)]),
        "identities": np.concatenate([identities_of_root[anchored_roots], np.zeros(len(bare_records), np.int64)]),
        "records": sizes,
    })
    expression, params = keyed_hash_sql(id_key, "anchor")
    con.execute(f"""
        create table {w}.users as
        select u, 'u_' || substr({expression}, 1, 16) as user_id, anchor, first_seen, identities, records
        from (
            select u.u, coalesce(lk.link_type || chr(9) || lk.scope || chr(9) || lk.link_value,
                                 r.source || '/' || r.record_id) as anchor,
                   case when u.first_time <> {_NULL_TIME} then make_timestamp(u.first_time) end as first_seen,
                   u.identities, u.records
            from {w}.user_rows u
            left join {w}.link_keys lk on lk.k = u.lkey
            left join {w}.records r on r.rid = u.rid
        )
    """, params or None)
    (duplicates,) = con.execute(f"select count(*) - count(distinct user_id) from {w}.users").fetchall()[0]
    if duplicates:
        raise RuntimeError("two clusters hash to one user_id; 64-bit ids should make this practically impossible")
    con.execute(f"""
        create table users as
        select user_id, anchor, first_seen, identities, records from {w}.users order by user_id
    """)
    _register(con, "record_user", {"rid": np.arange(n_records, dtype=np.int64), "u": record_user})
    con.execute(f"""
        create table record_map as
        select r.source, r.record_id, x.user_id from {w}.records r
        join {w}.record_user ru on ru.rid = r.rid join {w}.users x on x.u = ru.u
        order by r.rid
    """)
    _register(con, "observed_user", {
        "oid": np.arange(n_observed, dtype=np.int64), "k": kept_observed, "u": node_user[observed_iid]
    })
    con.execute(f"""
        create table id_map as
        select o.id_type, o.scope, o.id_value, x.user_id from {w}.observed_user ou
        join {w}.observed o on o.k = ou.k join {w}.users x on x.u = ou.u
        order by ou.oid
    """)
    refused = np.flatnonzero(rejected >= 0)
    _register(con, "refused", {
        "n": refused,
        "rid": link_rid[refused],
        "k": kept_observed[link_oid[refused]],
        "u": record_user[link_rid[refused]],
        "cu": node_user[link_iid[refused]],
        "class": rejected[refused],
    })
    con.register("_class_types", pl.DataFrame({"class": np.arange(len(class_types)), "link_type": class_types},
                                              schema={"class": pl.Int64, "link_type": pl.String}).to_arrow())
    con.execute(f"""
        create table rejected_links as
        select r.source, r.record_id, o.id_type, o.scope, o.id_value, ru.user_id,
               cu.user_id as conflicting_user_id, 'unique_conflict:' || c.link_type as reason
        from {w}.refused x
        join {w}.records r on r.rid = x.rid join {w}.observed o on o.k = x.k
        join {w}.users ru on ru.u = x.u join {w}.users cu on cu.u = x.cu
        join _class_types c on c.class = x.class
        order by x.n
    """)
    con.unregister("_class_types")
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
    histogram = np.bincount(identities_of_root[anchored_roots][sizes[: len(anchored_roots)] > 0])
    bare_with_records = int((sizes[len(anchored_roots):] > 0).sum())
    by_identities = {int(k): int(v) for k, v in enumerate(histogram) if v}
    if bare_with_records:
        by_identities = {0: bare_with_records, **by_identities}
    ((values_blocked, values_shared),) = con.execute(
        "select count(*) filter (reason <> 'shared'), count(*) filter (reason = 'shared') from blocked_values"
    ).fetchall()
    return {
        "records": n_records,
        "links": len(link_rid),
        "identities": n_identities,
        "users": int((sizes > 0).sum()),
        "largest_user_size": int(sizes.max()) if len(sizes) else 0,
        "users_by_identity_count": by_identities,
        "links_rejected": len(refused),
        "values_blocked": int(values_blocked),
        "values_shared": int(values_shared),
    }
