"""Observations in, one user id per record out.

Steps, in order (see docs/identity.md): normalize and block (per row); translate hashed phones to known plain
phones and find shared values (joins and group-bys); order the links (one sort); the greedy union (sequential,
`identity.engine`); then anchors, user ids and the output tables (joins and group-bys again).

Strings are turned into dense integer ranks once (records, observed identities, linking identities), numbered in
the text order of their keys, so every later sort and join runs on integers and integer order is text order.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import resource
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from identity.config import IdentityConfig
from identity.engine import greedy_union
from identity.memory import for_large_arrays
from identity.normalize import BLOCK_REASONS, HASH_LENGTHS, OUTPUT_COLUMNS, normalize_observations, phone_hashes
from identity.privacy import hash_engine, keyed_hash_series

RECORD_MAP_SCHEMA = {"source": pl.String, "record_id": pl.String, "user_id": pl.String}
ID_MAP_SCHEMA = {"id_type": pl.String, "scope": pl.String, "id_value": pl.String, "user_id": pl.String}
REJECTED_SCHEMA = {
    "source": pl.String,
    "record_id": pl.String,
    "id_type": pl.String,
    "scope": pl.String,
    "id_value": pl.String,
    "user_id": pl.String,
    "conflicting_user_id": pl.String,
    "reason": pl.String,
}
BLOCKED_SCHEMA = {
    "id_type": pl.String,
    "scope": pl.String,
    "id_value": pl.String,
    "reason": pl.String,
    "records": pl.Int64,
}
LINKS_SCHEMA = {
    "source": pl.String,
    "record_id": pl.String,
    "id_type": pl.String,
    "scope": pl.String,
    "id_value": pl.String,
    "link_type": pl.String,
    "link_value": pl.String,
    "strength": pl.String,
    "observed_at": pl.Datetime("us"),
    "status": pl.String,
    "user_id": pl.String,
}
USERS_SCHEMA = {
    "user_id": pl.String,
    "anchor": pl.String,
    "first_seen": pl.Datetime("us"),
    "identities": pl.Int64,
    "records": pl.Int64,
}
HASH_TYPES = ("phone_md5", "phone_sha256")


@dataclass(frozen=True)
class Hints:
    """Facts from outside the observations given, so that resolving a subset gives the same answer as the whole.

    `shared_keys` (id_type, scope, id_value): observed identities known to be shared; a linking identity any of
    whose observations carries one of these keys is shared. `phones` (id_value, unusable_reason): plain phones
    seen elsewhere, which hashed phones may translate to. Used by incremental runs (identity.incremental).
    """

    shared_keys: pl.DataFrame | None = None
    phones: pl.DataFrame | None = None


class _HeldLinks:
    """What LinkTable and LinkParts share: the links table's shape, and any other DataFrame attribute (`filter`,
    `sort`, ...) taken from the table built whole, so that code written for a DataFrame keeps working."""

    height: int

    def __len__(self) -> int:
        return self.height

    @property
    def columns(self) -> list[str]:
        return list(LINKS_SCHEMA)

    @property
    def schema(self) -> pl.Schema:
        return pl.Schema(LINKS_SCHEMA)

    def slice(self, offset: int, length: int | None = None) -> pl.DataFrame:
        raise NotImplementedError

    def frame(self) -> pl.DataFrame:
        return self.slice(0)

    def tail(self, rows: int) -> pl.DataFrame:
        return self.slice(max(self.height - rows, 0))

    def __getattr__(self, name: str):
        if name.startswith("_") or name == "parts":
            raise AttributeError(name)
        return getattr(self.frame(), name)


class LinkTable(_HeldLinks):
    """The `links` table (LINKS_SCHEMA, one row per distinct link in link order) held as integers: per link its
    record, observed identity, linking identity, observation row and status; the strings stay in the record,
    identity, observation and user tables they come from and are gathered only for the rows asked for.

    At 27M links the table as strings is about 4 GB of memory; `slice` builds a part of it (the state is written
    to DuckDB in 2M-row slices), `frame()` all of it. Any other DataFrame attribute (`filter`, `sort`, ...) is
    taken from `frame()`, so code written for a DataFrame keeps working at the cost of building it.
    """

    def __init__(self, records, observed, nodes, facts, rid, oid, iid, fact_rows, status, record_user, user_ids):
        self._records, self._observed, self._nodes, self._facts = records, observed, nodes, facts
        self._rid, self._oid, self._iid, self._fact_rows = rid, oid, iid, fact_rows
        self._status, self._record_user, self.user_ids = status, record_user, user_ids

    @property
    def height(self) -> int:
        return len(self._rid)

    def _gather(self, positions: np.ndarray) -> pl.DataFrame:
        rid = self._rid[positions]
        return pl.concat(
            [
                self._records[rid],
                self._observed[self._oid[positions]],
                self._nodes[self._iid[positions]],
                self._facts[self._fact_rows[positions]],
                pl.DataFrame(
                    [
                        pl.Series("status", ["redundant", "joined", "rejected"]).gather(self._status[positions]),
                        self.user_ids.gather(self._record_user[rid]).alias("user_id"),
                    ]
                ),
            ],
            how="horizontal",
        ).select(list(LINKS_SCHEMA)).cast(LINKS_SCHEMA)

    def slice(self, offset: int, length: int | None = None) -> pl.DataFrame:
        stop = self.height if length is None else min(self.height, offset + length)
        return self._gather(np.arange(offset, max(offset, stop), dtype=np.int64))

    def of_users(self, user_ids: pl.Series) -> pl.DataFrame:
        """The rows whose user_id is one of `user_ids`, without building the others."""
        return self._gather(np.flatnonzero(self.rows_of_users(user_ids)))

    def rows_of_users(self, user_ids: pl.Series) -> np.ndarray:
        """Per row, whether its user_id is one of `user_ids` (a boolean array)."""
        wanted = self.user_ids.is_in(user_ids.implode()).to_numpy()
        return wanted[self._record_user[self._rid]]

    def take(self, positions: np.ndarray) -> "LinkTable":
        """The rows at `positions`, still as integers: the string tables are shared, not copied."""
        taken = LinkTable.__new__(LinkTable)
        taken.__dict__.update(self.__dict__)
        for name in ("_rid", "_oid", "_iid", "_fact_rows", "_status"):
            setattr(taken, name, getattr(self, name)[positions])
        return taken

    def with_user_ids(self, user_ids: pl.Series) -> "LinkTable":
        """The same links with the users' ids replaced (user_ids: one per user, in the order of `user_ids`)."""
        renamed = LinkTable.__new__(LinkTable)
        renamed.__dict__.update(self.__dict__)
        renamed.user_ids = user_ids
        return renamed


class LinkParts(_HeldLinks):
    """The `links` table held as consecutive parts, each a LinkTable or a DataFrame, with LinkTable's interface.

    What an in-memory incremental run keeps: the previous links of the users it did not touch (taken from a
    LinkTable they stay integers, and the strings stay shared with it) followed by the re-resolved users' links.
    Building the previous links as strings took 1.4 s at 10M links, on every batch, for rows the run leaves as they
    were, and filtering them was part of the 4.4 s the six per-row tables took (the five others: 1.3 s).
    """

    # beyond this many parts, all but the first are built into one frame: each part keeps the string tables of
    # the run that made it, so batch after batch would otherwise hold more and more of them
    MAX_PARTS = 8

    def __init__(self, parts: list) -> None:
        flat = [inner for part in parts for inner in (part.parts if isinstance(part, LinkParts) else [part])]
        flat = [part for part in flat if part.height] or flat[:1]
        if len(flat) > self.MAX_PARTS:
            flat = [flat[0], pl.concat([links_frame(part).cast(LINKS_SCHEMA) for part in flat[1:]])]
        self.parts = flat

    @property
    def height(self) -> int:
        return sum(part.height for part in self.parts)

    def slice(self, offset: int, length: int | None = None) -> pl.DataFrame:
        stop = self.height if length is None else min(self.height, offset + length)
        pieces, start = [], 0
        for part in self.parts:
            low, high = max(offset, start), min(stop, start + part.height)
            if low < high:
                pieces.append(part.slice(low - start, high - low).cast(LINKS_SCHEMA))
            start += part.height
        return pl.concat(pieces) if pieces else pl.DataFrame(schema=LINKS_SCHEMA)

    def of_users(self, user_ids: pl.Series) -> pl.DataFrame:
        pieces = [links_of_users(part, user_ids).cast(LINKS_SCHEMA) for part in self.parts]
        return pl.concat(pieces) if pieces else pl.DataFrame(schema=LINKS_SCHEMA)

    def rows_of_users(self, user_ids: pl.Series) -> np.ndarray:
        masks = [link_rows_of_users(part, user_ids) for part in self.parts]
        return np.concatenate(masks) if masks else np.zeros(0, dtype=bool)

    def take(self, positions: np.ndarray) -> "LinkParts":
        """The rows at `positions` (ascending)."""
        parts, start = [], 0
        for part in self.parts:
            low, high = np.searchsorted(positions, [start, start + part.height])
            parts.append(take_links(part, positions[low:high] - start))
            start += part.height
        return LinkParts(parts)


def links_frame(links: "pl.DataFrame | LinkTable | LinkParts | None") -> pl.DataFrame | None:
    """`links` as a DataFrame, whichever way it is held."""
    return links.frame() if isinstance(links, _HeldLinks) else links


def links_of_users(links: "pl.DataFrame | LinkTable | LinkParts", user_ids: pl.Series) -> pl.DataFrame:
    """The links whose user_id is one of `user_ids`, whichever way they are held (a LinkTable builds only these)."""
    if isinstance(links, _HeldLinks):
        return links.of_users(user_ids)
    return links.filter(pl.col("user_id").is_in(user_ids.implode()))


def link_rows_of_users(links: "pl.DataFrame | LinkTable | LinkParts", user_ids: pl.Series) -> np.ndarray:
    """Per row of `links`, whether its user is one of `user_ids`."""
    if isinstance(links, _HeldLinks):
        return links.rows_of_users(user_ids)
    return links["user_id"].is_in(user_ids.implode()).to_numpy()


def take_links(links: "pl.DataFrame | LinkTable | LinkParts", positions: np.ndarray):
    """The rows of `links` at `positions`, held the way `links` is."""
    if isinstance(links, _HeldLinks):
        return links.take(positions)
    return links[positions]


@dataclass
class Resolution:
    record_map: pl.DataFrame
    id_map: pl.DataFrame
    rejected_links: pl.DataFrame
    blocked_values: pl.DataFrame
    observations: pl.DataFrame
    stats: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    # one row per user (also users with no records): anchor, first_seen, identities, records
    users: pl.DataFrame | None = None
    # one row per distinct link in link order, with status joined / redundant / rejected (resolve(links=True));
    # a LinkTable from resolve(), a DataFrame when read back from a state
    links: "pl.DataFrame | LinkTable | None" = None

    def tables(self) -> dict[str, pl.DataFrame]:
        """The five contract tables by their `identity.*` names."""
        return {
            "observations": self.observations,
            "record_map": self.record_map,
            "id_map": self.id_map,
            "rejected_links": self.rejected_links,
            "blocked_values": self.blocked_values,
        }


def user_id_for(anchor: str, key: bytes | None = None) -> str:
    """`u_` + 16 hex digits of a digest of the anchor (the user's first identity). With a key the digest is an
    HMAC: a plain hash of an anchor that is a phone would let anyone holding the phone find the user id."""
    if key is None:
        digest = hashlib.sha256(anchor.encode("utf-8")).hexdigest()
    else:
        digest = hmac.new(key, anchor.encode("utf-8"), hashlib.sha256).hexdigest()
    return "u_" + digest[:16]


def user_ids_for(anchors: "pl.Series | list[str]", key: bytes | None = None) -> pl.Series:
    """`user_id_for` of each anchor, computed in bulk (`identity.privacy.keyed_hash_series`): a String Series."""
    digests = keyed_hash_series(key, pl.Series("anchor", anchors, dtype=pl.String))
    return ("u_" + digests.str.slice(0, 16)).alias("user_id")


def user_id_order(user_ids: pl.Series) -> np.ndarray:
    """The positions of `user_ids` (of `user_ids_for`) in text order; raises if two are equal."""
    # "u_" + 16 hex digits: text order is the order of the 64-bit number, parsed in one piece and sorted as such
    id_number = user_ids.str.slice(2, 16).str.to_integer(base=16, dtype=pl.UInt64).to_numpy()
    by_id = pl.Series(id_number).arg_sort().to_numpy()
    if len(by_id) > 1 and (id_number[by_id[1:]] == id_number[by_id[:-1]]).any():
        raise RuntimeError("two clusters hash to one user_id; 64-bit ids should make this practically impossible")
    return by_id


class PhaseClock:
    """Called with a phase's name at its end: `seconds` per phase, and `peak_mb`, the process's peak resident
    memory so far (MB) at the end of each, which tells in which phase the peak was reached."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self._clock
        self.peak_mb[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
        self._clock = now


def priority_ranks(listed: tuple[str, ...] | list[str], present: list[str]) -> dict[str, int]:
    """Listed names in their order, then every other present name alphabetically."""
    ranks = {name: index for index, name in enumerate(listed)}
    for name in sorted(set(present) - set(ranks)):
        ranks[name] = len(ranks)
    return ranks


def _dense(*columns: str) -> pl.Expr:
    """0-based rank of the key in text order; ties (equal keys) share a number."""
    key = pl.col(columns[0]) if len(columns) == 1 else pl.struct(columns)
    return (key.rank("dense") - 1).cast(pl.Int64)


# polars keeps strings of up to 12 bytes inline in its string views and sorts them fast; longer ones (openids,
# unionids, hashes) sort several times slower, so those are ranked through their hashes (see _text_rank)
_INLINE_BYTES = 12


def _sort(values: np.ndarray) -> np.ndarray:
    """`values` (integers) sorted, read-only. polars sorts integers 3-4x faster than numpy 2.4's np.sort on this
    machine (9.7M int64: 0.17 s against 0.62 s, single-threaded both; numpy's wheel here does not dispatch to
    its AVX-512 sort), and a sorted array of integers is the same whoever sorted it."""
    return pl.Series(values).sort(multithreaded=False).to_numpy()


def _dense_ints(values: pl.Series) -> pl.Series:
    """Dense 0-based rank (Int64) of non-negative integers. Packed with the row number into one int64 when it
    fits, so that a sort of plain integers stands in for an argsort; else polars' rank."""
    x = values.to_numpy()
    n = len(x)
    bits = max(n - 1, 1).bit_length()
    if n == 0 or values.null_count() or int(x.min()) < 0 or int(x.max()) >= 1 << (62 - bits):
        return (values.rank("dense") - 1).cast(pl.Int64)
    packed = _sort((x.astype(np.int64) << bits) | np.arange(n, dtype=np.int64))
    rows = packed & ((1 << bits) - 1)
    sorted_values = packed >> bits
    new = np.empty(n, dtype=np.int64)
    new[0] = 0
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=new[1:])
    rank = np.empty(n, dtype=np.int64)
    rank[rows] = np.cumsum(new)
    return pl.Series(values.name, rank, dtype=pl.Int64)


def _text_rank(values: pl.Series) -> pl.Series:
    """Dense 0-based rank (Int64) of each value in text order. A null ranks as the empty string would (below
    every other value), so that a column need not be copied to fill its nulls first.

    Long strings: factorize by a 64-bit hash (an integer sort), sort only one string per distinct hash, and give
    every row the rank of its hash. Exact whatever the hash does: every row is compared with the string its rank
    stands for, and a collision (two strings, one hash) falls back to polars' own rank.
    """
    n = len(values)
    nulls = values.null_count()
    if n == 0 or nulls == n or values.str.len_bytes().max() <= _INLINE_BYTES or (nulls and (values == "").any()):
        return ((values.fill_null("") if nulls else values).rank("dense") - 1).cast(pl.Int64)
    hashes = values.hash(seed=0).to_numpy()
    order = pl.Series(hashes).arg_sort().to_numpy()
    sorted_hashes = hashes[order]
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(sorted_hashes[1:], sorted_hashes[:-1], out=starts[1:])
    # one row per distinct hash (gathered in row order, which is kinder to the cache), then sorted as text, a
    # null first (where the empty string, absent here, would be)
    distinct = values.gather(_sort(order[starts])).sort()
    # the i-th smallest hash is the hash of distinct[rank_of_group[i]]
    rank_of_group = pl.Series(distinct.hash(seed=0)).arg_sort().to_numpy().astype(np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = rank_of_group[np.cumsum(starts) - 1]
    if not distinct.gather(rank).eq_missing(values).all():
        return (values.fill_null("").rank("dense") - 1).cast(pl.Int64)
    return pl.Series(rank, dtype=pl.Int64)


def _small_rank(values: pl.Series, distinct_out: list | None = None) -> pl.Series:
    """Dense 0-based rank (Int64) in text order of a column with few distinct values (source, id_type, scope).
    `distinct_out`, when given, receives the distinct values in rank order."""
    if len(values) == 0:
        return pl.Series(values.name, [], dtype=pl.Int64)
    distinct = values.unique().sort().to_list()
    if distinct_out is not None:
        distinct_out.extend(distinct)
    if values.null_count() == 0 and values.dtype == pl.String:
        # an Enum of the sorted values stores each row's rank as its code: 0.3 s at 10M rows, replace_strict 0.45
        return values.cast(pl.Enum(distinct)).to_physical().cast(pl.Int64).alias(values.name)
    return values.replace_strict({value: index for index, value in enumerate(distinct)}, return_dtype=pl.Int64)


def _key_rank(
    frame: pl.DataFrame, small: tuple[str, ...], last: str, parts: dict | None = None, pool: Executor | None = None
) -> pl.Series:
    """An Int64 per row that orders (and equals) like the text key (*small, last): per-column ranks combined into
    one integer, not dense. `small` columns have few distinct values; nulls in them fall back to one struct rank.
    `parts`, when given, receives {small column: (its text rank, its distinct values in rank order)}. With `pool`,
    the small columns are ranked there while this thread ranks `last`."""
    columns = [*small, last]
    # nulls in `last` rank as empty strings (_text_rank); in the small columns the struct rank handles them
    if frame.height == 0 or any(frame[column].null_count() for column in small):
        return frame.select(_dense(*columns)).to_series()
    small_ranks = pool.submit(_small_ranks, frame, small) if pool is not None else None
    last_rank = _text_rank(frame[last])
    ranked = small_ranks.result() if small_ranks is not None else _small_ranks(frame, small)
    if parts is not None:
        parts.update(ranked)
    key, span = None, 1
    for rank in [*(ranked[column][0] for column in small), last_rank]:
        width = int(rank.max()) + 1
        span *= width
        if span >= 2**62:
            return frame.select(_dense(*columns)).to_series()
        key = rank if key is None else key * width + rank
    return key


def _small_ranks(frame: pl.DataFrame, columns: tuple[str, ...]) -> dict[str, tuple[pl.Series, list]]:
    """{column: (its text rank, its distinct values in rank order)} of columns with few distinct values."""
    ranked = {}
    for column in columns:
        distinct: list = []
        ranked[column] = (_small_rank(frame[column], distinct), distinct)
    return ranked


_NULL_TIME = np.iinfo(np.int64).max  # observed_at null: after every time


def _as_time(epoch_us: np.ndarray) -> pl.Series:
    series = pl.Series("t", epoch_us, dtype=pl.Int64)
    return pl.select(pl.when(series != _NULL_TIME).then(series)).to_series().cast(pl.Datetime("us"))


def _repeated_pairs(rid: np.ndarray, iid: np.ndarray, keys: list[np.ndarray], n_identities: int) -> np.ndarray:
    """The rows whose (rid, iid) pair is also on a row that comes before them in the order by `keys` (integer
    arrays, the first most significant); of rows equal in every key, the lowest comes first.

    Only the rows of repeated pairs are ranked: one sort of the packed pairs finds the repeated ones, the records
    holding them narrow the rows down, and only those rows are sorted by (pair, keys, row). At 29M links, 5.2M
    of them in repeated pairs, this took 2.5-3.5 s where looking each candidate up in the sorted pairs and ranking
    it by its position in the finished link order took 4.7-5.2 s (a binary search per row and a scatter of every
    position).
    """
    n = len(rid)
    if n < 2:
        return np.zeros(0, dtype=np.int64)
    width = n_identities + 1
    if (int(rid.max()) + 1) * width < 2**62:
        pair = rid * width + iid
        ordered = _sort(pair)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        del ordered
        if len(repeated) == 0:
            return np.zeros(0, dtype=np.int64)
        # only records that hold a repeated pair can hold its rows
        flagged = np.zeros(int(rid.max()) + 1, dtype=bool)
        flagged[repeated // width] = True
        candidates = np.flatnonzero(flagged[rid])
        rows = pl.DataFrame({"_pair": pair[candidates], "_row": candidates})
        pair_columns = ["_pair"]
    else:
        rows = pl.DataFrame({"_rid": rid, "_iid": iid, "_row": np.arange(n, dtype=np.int64)})
        pair_columns = ["_rid", "_iid"]
    pair_of_row = pl.struct(pair_columns) if len(pair_columns) > 1 else pl.col("_pair")
    rows = rows.filter(pair_of_row.is_duplicated())
    at = rows["_row"].to_numpy()
    key_columns = [f"_key{number}" for number in range(len(keys))]
    rows = rows.with_columns(pl.Series(name, key[at]) for name, key in zip(key_columns, keys))
    later = pl.all_horizontal(pl.col(c) == pl.col(c).shift(1) for c in pair_columns).fill_null(False)
    return rows.sort(*pair_columns, *key_columns, "_row").filter(later)["_row"].to_numpy()


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values of an int64 array, sorted (read-only)."""
    ordered = _sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _first_rows(ids: np.ndarray, n: int) -> np.ndarray:
    """The first row of each dense id 0..n-1 (every id occurs), in id order."""
    first = np.full(n, len(ids), dtype=np.int64)
    np.minimum.at(first, ids, np.arange(len(ids), dtype=np.int64))
    return first


def _link_order(
    prefix: np.ndarray,
    n_prefixes: int,
    link_time: np.ndarray,
    rid: np.ndarray,
    oid: np.ndarray,
    iid: np.ndarray,
    n_records: int,
    n_observed: int,
    n_identities: int,
) -> np.ndarray:
    """Positions of the links in link order, keeping the first of each (record, identity) pair (of links equal in
    every key, the one in the lowest row). The order:
    `prefix` (strength, type priority, source priority folded into one number below n_prefixes), observed_at
    (nulls last), then (source, record_id) and (id_type, scope, id_value) as text through rid and oid.

    The keys are packed into two int64s when they fit (they do unless times span centuries): sorting two integer
    columns is many times cheaper than six.
    """
    if len(prefix) == 0:
        return np.zeros(0, dtype=np.int64)
    columns = {}
    known = link_time[link_time != _NULL_TIME]
    low, high = (int(known.min()), int(known.max())) if len(known) else (0, 0)
    width = high - low + 2  # the last slot is null
    if n_prefixes * width < 2**62:
        columns["_k1"] = prefix * width + np.where(link_time == _NULL_TIME, width - 1, link_time - low)
    else:
        columns["_prefix"], columns["_time"] = prefix, link_time
    del prefix, link_time, known  # a caller that hands them over without keeping them gets their memory back
    if n_records * n_observed < 2**62:
        columns["_k2"] = rid * n_observed + oid
    else:
        columns["_rid"], columns["_oid"] = rid, oid
    # of each (record, identity) pair, the links after its first in that order
    repeated = _repeated_pairs(rid, iid, list(columns.values()), n_identities)
    order = pl.DataFrame(columns).select(pl.arg_sort_by(list(columns))).to_series().to_numpy()
    del columns
    if len(repeated) == 0:
        return order
    keep = np.ones(len(order), dtype=bool)
    keep[repeated] = False
    return order[keep[order]]


_DIGEST_PATTERNS = {32: "[0-9a-f]{32}", 64: "[0-9a-f]{64}"}  # lowercase hex of an md5, of a sha256
_HEX_DIGEST = {length: re.compile(pattern) for length, pattern in _DIGEST_PATTERNS.items()}


def _is_digest(value: str) -> bool:
    """Lowercase hex of an md5 or sha256 length: only such a value can equal a hexdigest."""
    return len(value) in _HEX_DIGEST and _HEX_DIGEST[len(value)].fullmatch(value) is not None


def _digest_phones(phones: pl.Series, digests: set[str], engine: str = "auto") -> dict[str, str]:
    """digest -> phone for each of `digests` (lowercase hex md5 or sha256) that is the digest of one of `phones`.

    Every phone must be hashed to find them, once however often it repeats in `phones`. DuckDB's vectorized
    md5/sha256 (DuckDB is a dependency of the project, used here only when importable) matched 1.5M phones in
    about a quarter of the time of hashlib in a Python loop; both give the same digests of the same ASCII text
    (tested).
    """
    by_length = {length: sorted(d for d in digests if len(d) == length) for length in (32, 64)}
    found: dict[str, str] = {}
    if not any(by_length.values()):
        return found  # nothing to look for: the phones are not even made distinct
    if hash_engine(engine) == "duckdb":
        from identity.connection import connect

        with connect() as con:
            con.register("phones", pl.DataFrame({"phone": phones}, schema={"phone": pl.String}).to_arrow())
            con.execute("create temp table distinct_phones as select distinct phone from phones")
            for length, function in ((32, "md5"), (64, "sha256")):
                if by_length[length]:
                    con.register("wanted", pl.DataFrame({"digest": by_length[length]}).to_arrow())
                    rows = con.execute(
                        f"select w.digest, p.phone from distinct_phones p join wanted w "
                        f"on {function}(p.phone) = w.digest"
                    ).fetchall()
                    found.update(rows)
                    con.unregister("wanted")
        return found
    wanted = {length: {bytes.fromhex(d): d for d in by_length[length]} for length in (32, 64)}
    hashers = [(hasher, wanted[length]) for length, hasher in ((32, hashlib.md5), (64, hashlib.sha256))]
    hashers = [(hasher, table) for hasher, table in hashers if table]
    for phone in phones.unique().to_list():
        data = phone.encode("ascii")
        for hasher, table in hashers:
            digest = hasher(data).digest()
            if digest in table:
                found[table[digest]] = phone
    return found



def _translate_hashed_phones(obs: pl.DataFrame, extra_phones: pl.DataFrame | None = None) -> pl.DataFrame:
    """Adds link_type/link_value: a phone hash that is the hash of a phone seen in plain becomes that phone.

    Translating beats emitting every phone's hashes as extra identities: the graph keeps one node per phone, and
    a hash nobody has in plain stays a hashed identity that can still link the records carrying it.
    """
    obs = obs.with_columns(link_type=pl.col("id_type"), link_value=pl.col("id_value"))
    hashed_rows = np.flatnonzero((obs["usable"] & obs["id_type"].is_in(HASH_TYPES)).to_numpy())
    if len(hashed_rows) == 0:
        return obs
    hashed = obs.select("id_type", "id_value")[hashed_rows]
    # a value can only be the digest of a type present among the hashed rows (md5: 32 hex digits, sha256: 64)
    lengths = {HASH_LENGTHS[name] for name in hashed["id_type"].unique().to_list()}
    # filtered before they become Python strings: this runs beside the key ranks, and a loop would hold the GIL
    digests = hashed["id_value"].unique()
    digest_pattern = "^(?:" + "|".join(_DIGEST_PATTERNS[length] for length in sorted(lengths)) + ")$"
    wanted = set(digests.filter(digests.str.contains(digest_pattern)).to_list())
    phones = obs.select("id_value", "unusable_reason").filter(
        (obs["id_type"] == "phone") & obs["id_value"].is_not_null()
    )
    if extra_phones is not None and extra_phones.height:
        phones = pl.concat([phones, extra_phones.select("id_value", "unusable_reason").cast(phones.schema)])
    to_phone = _digest_phones(phones["id_value"], wanted)
    if not to_phone:
        return obs
    # the reasons of the matched phones only (a dict of every phone took 1.3 s at 10M observations, a unique of
    # every phone row 0.7 s); one per phone whatever the row order, as the reason depends only on the value
    matched = pl.DataFrame(
        {"digest": list(to_phone), "id_value": list(to_phone.values())},
        schema={"digest": pl.String, "id_value": pl.String},
    )
    reasons = phones.join(matched, on="id_value", how="semi").unique(subset="id_value", keep="first")
    matched = matched.join(reasons, on="id_value", how="left")
    phone_reason = dict(zip(matched["digest"].to_list(), matched["unusable_reason"].to_list()))
    # md5 and sha256 digests differ in length, so one mapping serves both types. Only the hashed rows are
    # looked up; the results are scattered into the full columns.
    phone = hashed["id_value"].replace_strict(to_phone, default=None, return_dtype=pl.String)
    hit = phone.is_not_null().to_numpy()
    rows = hashed_rows[hit]
    values = hashed["id_value"].filter(hit)
    # the hash of a blocked phone is as blocked as the phone
    reason = values.replace_strict(phone_reason, default=None, return_dtype=pl.String)
    return obs.with_columns(
        obs["link_type"].clone().scatter(rows, "phone"),
        obs["link_value"].clone().scatter(rows, phone.filter(hit)),
        obs["unusable_reason"].clone().scatter(rows, reason),
    ).with_columns(usable=pl.col("unusable_reason").is_null())


def _observed_key_ranks(obs: pl.DataFrame, pool: Executor | None = None) -> tuple[pl.DataFrame, list[str]]:
    """(`_oid`, the text rank of each row's observed key (id_type, scope, id_value), and `_typ`, the text rank of
    id_type; the id_types in the order of `_typ`).

    Every row is ranked, usable or not (an unusable row's missing value ranks as ''; such rows are dropped before
    the ranks are used): ranking the columns of `obs` in place copies no strings, where ranking the usable rows
    would first copy them all. Hashed phones are not translated yet: this runs beside the translation. With
    `pool`, id_type and scope are ranked there (see `_key_rank`).
    """
    parts: dict = {}
    keys = obs.select("id_type", "scope", "id_value")
    oid = _key_rank(keys, ("id_type", "scope"), "id_value", parts, pool)
    if "id_type" in parts:
        typ, type_names = parts["id_type"]
    else:
        type_names = []
        typ = _small_rank(obs["id_type"], type_names)
    return pl.DataFrame([oid.alias("_oid"), typ.alias("_typ")]), type_names


def _with_link_key_ranks(obs: pl.DataFrame, ranks: pl.DataFrame) -> pl.DataFrame:
    """`ranks` (of `_observed_key_ranks`) with `_key`, the text rank of each row's link key (link_type, scope,
    link_value).

    One string sort instead of two: a link key differs from its observed key only for a translated hash, whose
    link key (phone, '', p) is the observed key of the plain phone p, so `_key` takes that row's `_oid`. When p is
    not among the rows (known only from incremental hints), the link keys are ranked on their own.
    """
    oid = ranks["_oid"]
    differs = (pl.col("link_type") != pl.col("id_type")) | (pl.col("link_value") != pl.col("id_value"))
    positions = obs.select(pl.arg_where(differs.fill_null(False))).to_series()
    if len(positions) == 0:
        return ranks.with_columns(_key=pl.col("_oid"))
    translated = obs.select("link_type", "scope", "link_value")[positions]
    wanted = translated["link_value"].unique().implode()
    is_plain = (obs["id_type"] == "phone") & obs["id_value"].is_in(wanted)
    plain = (
        pl.DataFrame([obs["scope"].filter(is_plain), obs["id_value"].filter(is_plain).alias("link_value"),
                      oid.filter(is_plain).alias("_oid")])
        .with_columns(link_type=pl.lit("phone"))
        .unique(subset=["link_type", "scope", "link_value"])
    )
    found = translated.join(plain, on=["link_type", "scope", "link_value"], how="left", maintain_order="left")
    if found["_oid"].null_count():
        links = obs.select("link_type", "scope", "link_value")
        return ranks.with_columns(_key=_key_rank(links, ("link_type", "scope"), "link_value"))
    return ranks.with_columns(_key=oid.clone().scatter(positions, found["_oid"]))


def _maybe_shared(carriers: pl.DataFrame, holders: pl.DataFrame, threshold: int) -> pl.DataFrame:
    """The carriers (rid, _key) of the values that can be shared at all, so that the exact count joins only those.

    A value's records hold at most, per class, as many distinct values as they have holder rows of that class,
    so at most the sum over its records of each record's largest per-class row count: a value whose sum is not
    above the threshold cannot be shared. Computed with one integer sort and a bincount.
    """
    if carriers.height == 0 or holders.height == 0:
        return carriers.clear()
    holder_rid, holder_class = holders["rid"].to_numpy(), holders["_class"].to_numpy()
    n_classes = int(holder_class.max()) + 1
    n_rid = max(int(holder_rid.max()), int(carriers["rid"].max())) + 1
    if n_rid * n_classes >= 2**62:
        return carriers
    cells = _sort(holder_rid * n_classes + holder_class)
    starts = np.flatnonzero(np.concatenate(([True], cells[1:] != cells[:-1])))
    rows = np.diff(np.append(starts, len(cells)))
    most = np.zeros(n_rid, dtype=np.int64)
    np.maximum.at(most, cells[starts] // n_classes, rows)
    # the sum per value by a bincount on its dense key (float64 sums of integers are exact far beyond these)
    key = carriers["_key"].to_numpy()
    bound = np.bincount(key, weights=most[carriers["rid"].to_numpy()]) > threshold
    return carriers.filter(pl.Series(bound[key]))


def shared_link_keys(
    rid: np.ndarray, key: np.ndarray, held: np.ndarray, held_class: np.ndarray, threshold: int
) -> np.ndarray:
    """The distinct link keys (integers) of non-unique identities seen on records that together hold more than
    `threshold` values of one unique class. Per link: its record `rid` and identity `key`; `held`: the links
    whose identity is of a unique type, `held_class` their (type, scope) class as any integer numbering."""
    holders = pl.DataFrame(
        {"rid": rid[held], "_held": key[held], "_class": held_class}
    )  # repeated rows only repeat join rows: the count below is of distinct values
    other = np.ones(len(rid), dtype=bool)
    other[held] = False
    # (record, identity) pairs of the non-unique identities, deduplicated on one integer when it fits
    width = int(key.max()) + 1 if len(key) else 1
    if (int(rid.max()) + 1 if len(rid) else 1) * width < 2**62:
        pair = _distinct(rid[other] * width + key[other])
        carriers = pl.DataFrame({"rid": pair // width, "_key": pair % width})
    else:
        carriers = pl.DataFrame({"rid": rid[other], "_key": key[other]}).unique()
    carriers = _maybe_shared(carriers, holders, threshold)
    counts = (
        carriers.join(holders, on="rid").group_by("_key", "_class").agg(pl.col("_held").n_unique().alias("_values"))
    )
    return counts.filter(pl.col("_values") > threshold)["_key"].unique().to_numpy()


def _shared_keys(
    obs: pl.DataFrame, links: pl.DataFrame, config: IdentityConfig, hints: Hints | None = None
) -> pl.Series:
    """`_key`s of non-unique identities seen on records that together hold more than `shared_threshold` values
    of one unique (type, scope) class: a front-desk phone, a staff member's own number, a shared device.
    `links`: the usable rows of `obs` (`_row`) with their record `rid` and dense link key rank `_key`."""
    rows = links["_row"].to_numpy()
    unique_rows = obs["link_type"].is_in(list(config.unique_types)).to_numpy()[rows]
    held = np.flatnonzero(unique_rows)
    classes = obs.select("link_type", "scope")[rows[held]]
    scope_rank = _small_rank(classes["scope"])
    held_class = (_small_rank(classes["link_type"]) * (int(scope_rank.max() or 0) + 1) + scope_rank).to_numpy()
    rid, key = links["rid"].to_numpy(), links["_key"].to_numpy()
    shared = pl.Series("_key", shared_link_keys(rid, key, held, held_class, config.shared_threshold))
    if hints is not None and hints.shared_keys is not None and hints.shared_keys.height:
        known = hints.shared_keys.select("id_type", "scope", "id_value").cast(pl.String)
        # incremental runs only, on the touched part: the strings of its links are copied here
        links = obs.select("id_type", "scope", "id_value", "link_type", "link_value")[rows].with_columns(links["_key"])
        # a shared hash shares the phone it translates to, even when none of its records are given here
        hashed = set(known.filter(pl.col("id_type").is_in(HASH_TYPES))["id_value"].to_list())
        if hashed:
            phones = links.filter(pl.col("link_type") == "phone")["link_value"].unique().to_list()
            hit = [phone for phone in phones if hashed.intersection(phone_hashes(phone))]
            known = pl.concat([known, pl.DataFrame({"id_type": "phone", "scope": "", "id_value": hit}).cast(pl.String)])
        hinted = pl.concat(
            [
                links.join(known, on=["id_type", "scope", "id_value"], how="semi")["_key"],
                links.join(
                    known.rename({"id_type": "link_type", "id_value": "link_value"}),
                    on=["link_type", "scope", "link_value"],
                    how="semi",
                )["_key"],
            ]
        )
        shared = pl.concat([shared, hinted])
    return shared.unique()


def without_shared(
    key: np.ndarray, observed: np.ndarray, shared: np.ndarray, n_keys: int
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The links left when the `shared` keys leave with all their links: (which links stay, or None when all
    do; their keys and observed keys renumbered to stay dense, in the same order; the old number of each new
    key; the old number of each new observed key). `key` and `observed` are dense, `key` below n_keys."""
    n_observed = int(observed.max()) + 1 if len(observed) else 0
    if len(shared) == 0:
        return None, key, observed, np.arange(n_keys, dtype=np.int64), np.arange(n_observed, dtype=np.int64)
    is_shared = np.zeros(n_keys, dtype=bool)
    is_shared[shared] = True
    kept = ~is_shared[key]
    key, observed = key[kept], observed[kept]
    still_observed = np.zeros(n_observed, dtype=bool)
    still_observed[observed] = True
    return (
        kept,
        (np.cumsum(~is_shared) - 1)[key],
        (np.cumsum(still_observed) - 1)[observed],
        np.flatnonzero(~is_shared),
        np.flatnonzero(still_observed),
    )


def unique_classes(pairs, type_rank: dict[str, int], unique_types) -> dict[tuple[str, str], int]:
    """The class number of each (link_type, scope) of a unique type among `pairs`: numbered by type priority,
    then type, then scope (a rejected link names its class)."""
    ordered = sorted({(type_rank[kind], kind, scope) for kind, scope in pairs if kind in unique_types})
    return {(kind, scope): number for number, (_, kind, scope) in enumerate(ordered)}


def anchor_priority(first_time: np.ndarray, node_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(identities in anchor priority, each identity's position in it). A user's anchor is its identity first
    seen earliest (nulls last), then of the highest type priority (`node_rank`), then first by key text (= id)."""
    n = len(first_time)
    priority = (
        pl.DataFrame({"t": first_time, "k": node_rank * max(n, 1) + np.arange(n)})
        .select(pl.arg_sort_by("t", "k"))
        .to_series()
        .to_numpy()
        .astype(np.int64)
    )
    position = np.empty(n, dtype=np.int64)
    position[priority] = np.arange(n, dtype=np.int64)
    return priority, position


def root_anchors(
    node_root: np.ndarray, position: np.ndarray, priority: np.ndarray, n_nodes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the roots holding identities, the anchor identity of each, the identity count of every root).
    `node_root`: the root of each identity; `position`/`priority` from `anchor_priority`."""
    best = np.full(n_nodes, len(position), dtype=np.int64)
    np.minimum.at(best, node_root, position)
    identities_of_root = np.bincount(node_root, minlength=n_nodes)
    anchored_roots = np.flatnonzero(identities_of_root)
    return anchored_roots, priority[best[anchored_roots]], identities_of_root


def _record_rank(observations: pl.DataFrame, parts: dict) -> pl.Series:
    """Dense rank of each row's record (source, record_id) in text order; `parts` receives source's ranks.
    Normalization passes both columns through as text, so the input's own columns give the same ranks."""
    records = observations.select(pl.col("source").cast(pl.String), pl.col("record_id").cast(pl.String))
    return _dense_ints(_key_rank(records, ("source",), "record_id", parts))


@for_large_arrays
def resolve(
    observations: pl.DataFrame,
    config: IdentityConfig | None = None,
    *,
    engine: str = "auto",
    links: bool = False,
    hints: Hints | None = None,
    id_key: bytes | None = None,
) -> Resolution:
    """Resolve observations (source, record_id, id_type, scope, id_value, observed_at[, strength]) to users.

    engine: "auto" uses numba when installed, "python" forces the interpreted kernel (same results).
    links: also build `Resolution.links` (every distinct link with its status), which `explain` and stable ids
    need; it costs a few joins. hints: see `Hints` (incremental runs). id_key: derive user ids by HMAC under this
    key instead of a plain SHA-256 of the anchor (`user_id_for`); the partition into users does not change.
    """
    if config is None:
        config = IdentityConfig()
    lap = PhaseClock()
    timings = lap.seconds

    parts: dict = {}
    # Each of these steps alone keeps one of this machine's two cores only partly busy, so a second thread takes,
    # in turn: the record ranks, beside normalization (which passes source and record_id through unchanged, so
    # they are ranked as given); the hashed-phone translation and the id_type and scope ranks, while this thread
    # ranks the identity values (the longest string sort). The link keys, which need the translation, are
    # ranked from the observed keys' ranks after.
    with ThreadPoolExecutor(max_workers=1) as pool:
        record_rank = pool.submit(_record_rank, observations, parts)
        obs = normalize_observations(observations, config)
        lap("normalize")
        # the frame is handed over, not read from `obs` when the thread runs: `obs` is reassigned below
        translated = pool.submit(_translate_hashed_phones, obs, hints.phones if hints is not None else None)
        ranks, type_names = _observed_key_ranks(obs, pool)
        translated = translated.result()
        lap("translate")
        ranks = _with_link_key_ranks(translated, ranks)
        obs = translated.with_columns(rid=record_rank.result())
    if "source" in parts:
        source_text, source_names = parts["source"]
    else:
        source_names = []
        source_text = _small_rank(obs["source"], source_names)
    rid = obs["rid"].to_numpy()
    n_records = int(rid.max()) + 1 if len(rid) else 0
    records = obs.select("rid", "source", "record_id")[_first_rows(rid, n_records)]

    # A link is a usable row of `obs` reduced to integers; its strings stay in `obs` and are gathered by row
    # number (`_row`) where needed, instead of copying 13M rows of them into a frame of links.
    want_links = links
    type_rank = priority_ranks(
        config.id_type_priority, obs["id_type"].unique().to_list() + obs["link_type"].unique().to_list()
    )
    source_rank = priority_ranks(config.source_priority, records["source"].unique().to_list())
    type_priority = np.array([type_rank[name] for name in type_names], dtype=np.int64)
    source_priority = np.array([source_rank[name] for name in source_names], dtype=np.int64)
    weak = (obs["strength"] == "weak").fill_null(False).to_numpy().astype(np.int64)
    links = pl.DataFrame(
        [
            pl.Series("_row", np.arange(obs.height, dtype=np.int64)),
            obs["rid"],
            ranks["_oid"],
            ranks["_key"],
            # strength, type priority and source priority folded into one number (see _link_order)
            pl.Series(
                "_prefix",
                (weak * len(type_rank) + type_priority[ranks["_typ"].to_numpy()]) * len(source_rank)
                + source_priority[source_text.to_numpy()],
            ),
            obs["observed_at"].dt.epoch("us").fill_null(_NULL_TIME).alias("_time"),
        ]
    ).filter(obs["usable"])
    del ranks, weak, source_text
    # The key ranks made dense (0..n-1 in text order, for joins, scatters and counts). Both are numpy sorts,
    # which let go of the GIL: one runs in a second thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        dense_oid = pool.submit(_dense_ints, links["_oid"])
        links = links.with_columns(_key=_dense_ints(links["_key"]), _oid=dense_oid.result())
    shared = _shared_keys(obs, links, config, hints).to_numpy()
    if len(shared):
        key = links["_key"].to_numpy()
        kept, key, observed, _, _ = without_shared(key, links["_oid"].to_numpy(), shared, int(key.max()) + 1)
        obs = obs.with_columns(
            obs["unusable_reason"].clone().scatter(links["_row"].filter(~kept), "shared")
        ).with_columns(usable=pl.col("unusable_reason").is_null())
        links = links.filter(kept).with_columns(
            _key=pl.Series(key, dtype=pl.Int64), _oid=pl.Series(observed, dtype=pl.Int64)
        )
    links = links.rename({"_key": "iid", "_oid": "oid"})
    lap("shared")

    iid, oid, link_obs = links["iid"].to_numpy(), links["oid"].to_numpy(), links["_row"].to_numpy()
    n_identities = int(iid.max()) + 1 if len(iid) else 0
    link_time = links["_time"].to_numpy()
    n_observed = int(oid.max()) + 1 if len(oid) else 0
    # the link order (sorts) in a second thread while this one builds the node tables
    with ThreadPoolExecutor(max_workers=1) as pool:
        link_order = pool.submit(
            _link_order,
            links["_prefix"].to_numpy(),
            2 * len(type_rank) * len(source_rank),
            link_time,
            links["rid"].to_numpy(),
            oid,
            iid,
            n_records,
            n_observed,
            n_identities,
        )
        # every node's first row and earliest time by scatter on the dense ids (a group-by over millions of groups
        # is much slower); ids follow the text order of their keys, so the nodes come out sorted by them
        first_time = np.full(n_identities, _NULL_TIME, dtype=np.int64)
        np.minimum.at(first_time, iid, link_time)
        nodes = obs.select("link_type", "scope", "link_value")[link_obs[_first_rows(iid, n_identities)]].select(
            pl.Series("iid", np.arange(n_identities, dtype=np.int64)), pl.all(), first_seen=_as_time(first_time)
        )
        first_observed = _first_rows(oid, n_observed)
        observed_keys = obs.select("id_type", "scope", "id_value")[link_obs[first_observed]].select(
            pl.Series("oid", np.arange(n_observed, dtype=np.int64)), pl.Series("iid", iid[first_observed]), pl.all()
        )
        # Per (link_type, scope): the type priority of its nodes and, for a unique type, its class id, looked up
        # once per run of equal pairs, not once per node (a replace and a join over millions of nodes took
        # 0.5-0.9 s). Nodes are in text order, so each pair is one run; correct in any order, only slower.
        changed = nodes.select(
            pl.col("link_type").ne_missing(pl.col("link_type").shift(1))
            | pl.col("scope").ne_missing(pl.col("scope").shift(1))
        ).to_series()
        run_starts = np.flatnonzero(changed.to_numpy())
        run_lengths = np.diff(np.append(run_starts, n_identities))
        runs = list(zip(nodes["link_type"].gather(run_starts).to_list(), nodes["scope"].gather(run_starts).to_list()))
        class_of = unique_classes(runs, type_rank, config.unique_types)
        classes = pl.DataFrame(
            sorted(class_of, key=class_of.get), schema={"link_type": pl.String, "scope": pl.String}, orient="row"
        ).with_row_index("class_id")
        node_rank = np.repeat(np.array([type_rank[kind] for kind, _ in runs], dtype=np.int64), run_lengths)
        node_class = np.full(n_records + n_identities, -1, dtype=np.int64)
        run_class = np.array([class_of.get(run, -1) for run in runs], dtype=np.int64)
        node_class[n_records:] = np.repeat(run_class, run_lengths)
        link_rows = link_order.result()
    ordered = links.select("rid", "oid", "iid")[link_rows]
    lap("order")

    # The kernel (numba, which lets go of the GIL) runs in a second thread while this one prepares what does not
    # depend on its result: the blocked values and the anchor priority of every identity.
    with ThreadPoolExecutor(max_workers=1) as pool:
        union = pool.submit(
            greedy_union,
            n_records + n_identities,
            ordered["rid"].to_numpy(),
            ordered["iid"].to_numpy() + n_records,
            node_class,
            classes.height,
            engine=engine,
        )
        # What the outputs need of `obs` and `links` first, so that their working columns (translated keys,
        # ranks) are freed before the output tables are gathered: a gigabyte less at the peak at 13M observations.
        blocked_values = (
            obs.filter(pl.col("unusable_reason").is_in(BLOCK_REASONS))
            .group_by("id_type", "scope", "id_value", "unusable_reason")
            .agg(pl.col("rid").n_unique().cast(pl.Int64).alias("records"))
            .rename({"unusable_reason": "reason"})
            .sort("id_type", "scope", "id_value", "reason")
            .select(list(BLOCKED_SCHEMA))
        )
        observations_out = obs.select(OUTPUT_COLUMNS)
        del obs, links
        priority, position = anchor_priority(first_time, node_rank)
        roots, rejected, joined = union.result()
    lap("link")

    # Outputs by integer index: every cluster (root) gets a row number in `users`, and the strings of records,
    # identities and user ids are gathered once by those numbers instead of joined.
    n_nodes = n_records + n_identities
    record_root, node_root = roots[:n_records], roots[n_records:]
    anchored_roots, anchor_node, identities_of_root = root_anchors(node_root, position, priority, n_nodes)
    anchored = nodes[anchor_node].select(
        pl.Series("root", anchored_roots, dtype=pl.Int64),
        pl.Series("identities", identities_of_root[anchored_roots], dtype=pl.Int64),
        pl.concat_str(["link_type", "scope", "link_value"], separator="\t").alias("anchor"),
        "first_seen",
    )
    # a record whose identifiers were all unusable (or all refused) is a cluster on its own
    bare_records = np.flatnonzero(identities_of_root[record_root] == 0)
    bare = records[bare_records].select(
        pl.Series("root", record_root[bare_records], dtype=pl.Int64),
        pl.lit(0, dtype=pl.Int64).alias("identities"),
        pl.concat_str(["source", "record_id"], separator="/").alias("anchor"),
        pl.lit(None, dtype=pl.Datetime("us")).alias("first_seen"),
    )
    users = pl.concat([anchored, bare.cast(anchored.schema)])
    user_ids = user_ids_for(users["anchor"], id_key)
    by_id = user_id_order(user_ids)
    user_of_root = np.full(n_nodes, -1, dtype=np.int64)
    user_of_root[users["root"].to_numpy()] = np.arange(users.height, dtype=np.int64)
    record_user = user_of_root[record_root]
    node_user = user_of_root[node_root]

    record_map = records.select("source", "record_id").with_columns(user_id=user_ids.gather(record_user))
    id_map = observed_keys.select(
        "id_type", "scope", "id_value", user_ids.gather(node_user[observed_keys["iid"].to_numpy()]).alias("user_id")
    )

    link_rid, link_oid, link_iid = (ordered[column].to_numpy() for column in ("rid", "oid", "iid"))
    refused = np.flatnonzero(rejected >= 0)
    class_types = classes["link_type"]
    rejected_links = pl.concat(
        [
            records.select("source", "record_id")[link_rid[refused]],
            pl.DataFrame([user_ids.gather(record_user[link_rid[refused]])]),
            observed_keys.select("id_type", "scope", "id_value")[link_oid[refused]],
            pl.DataFrame([user_ids.gather(node_user[link_iid[refused]]).alias("conflicting_user_id")]),
            pl.DataFrame([("unique_conflict:" + class_types.gather(rejected[refused])).alias("reason")]),
        ],
        how="horizontal",
    ).select(list(REJECTED_SCHEMA))

    sizes = np.bincount(record_user, minlength=users.height)
    users = users.with_columns(user_id=user_ids, records=pl.Series(sizes, dtype=pl.Int64))
    users_table = users[by_id].select(list(USERS_SCHEMA)).cast(USERS_SCHEMA)
    links_table = None
    if want_links:
        status = np.where(rejected >= 0, 2, joined.astype(np.int64)).astype(np.int8)
        links_table = LinkTable(
            records=records.select("source", "record_id"),
            observed=observed_keys.select("id_type", "scope", "id_value"),
            nodes=nodes.select("link_type", "link_value"),
            facts=observations_out.select("strength", "observed_at"),
            rid=link_rid,
            oid=link_oid,
            iid=link_iid,
            fact_rows=link_obs[link_rows],
            status=status,
            record_user=record_user,
            user_ids=user_ids,
        )
    with_records = users.filter(pl.col("records") > 0)
    histogram = with_records.group_by("identities").len().sort("identities")
    stats = {
        "records": n_records,
        "links": ordered.height,
        "identities": n_identities,
        "users": with_records.height,
        "largest_user_size": int(sizes.max()) if len(sizes) else 0,
        "users_by_identity_count": {int(k): int(v) for k, v in histogram.iter_rows()},
        "links_rejected": rejected_links.height,
        "values_blocked": int((blocked_values["reason"] != "shared").sum()),
        "values_shared": int((blocked_values["reason"] == "shared").sum()),
    }
    lap("outputs")
    return Resolution(
        record_map=record_map.cast(RECORD_MAP_SCHEMA),
        id_map=id_map.cast(ID_MAP_SCHEMA),
        rejected_links=rejected_links.cast(REJECTED_SCHEMA),
        blocked_values=blocked_values.cast(BLOCKED_SCHEMA),
        observations=observations_out,
        stats=stats,
        timings=timings,
        users=users_table,
        links=links_table,
    )
