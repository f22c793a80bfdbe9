"""Deletion requests (PIPL art. 47): forget a person everywhere in the warehouse, and keep them forgotten.

Who "the person" is: the identifiers the request names (normalized like observations), plus every identifier
seen *only* on records that carry one of them (the person's own unionid on their own logins, say). Their
records are every record carrying one of those identifiers. Deliberately not the whole unified user: a person
who bridged two others (a family phone on two accounts) sits in one unified user with them, and deleting it
would delete the others too; rerunning resolution without the person's records splits them apart again.
`whole_user=True` deletes the whole unified user instead (every identity and record it holds).

What is removed: the person's rows in every raw table (all exports, all status versions), quarantine entries
holding one of their identifier values, the identity-candidate schema; merge-log entries naming their records
or identifiers are redacted. The identity tables and the marts are then rebuilt by rerunning the pipeline,
which no longer sees the records. A tombstone (HMAC of each identifier, never the value) in `privacy.tombstones`
makes ingest drop any later row carrying one of them: replayed old exports cannot bring the person back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import polars as pl

import identity
from identity.config import IdentityConfig
from identity.normalize import PHONE_SEPARATOR_CHARS, phone_hashes
from identity.privacy import identity_hmac, identity_hmac_series
from identity.state import table_exists
from pipelines.observations import RecordSpec

PRIVACY_SCHEMA = "privacy"
TOMBSTONES = f"{PRIVACY_SCHEMA}.tombstones"
IDENTITY_KEY = ["id_type", "scope", "id_value"]
FORGETTABLE_TYPES = ("phone", "openid", "unionid", "member_id", "external_userid", "email", "buyer_account")


@dataclass
class ForgetReport:
    identifiers_given: int = 0
    identities: int = 0
    records: int = 0
    tombstones_added: int = 0
    raw_rows_deleted: dict[str, int] = field(default_factory=dict)
    quarantine_rows_deleted: int = 0
    merge_log_rows_redacted: int = 0
    unknown: int = 0  # identifiers given that the warehouse has never seen (tombstoned all the same)

    def lines(self) -> list[str]:
        """What was removed, as counts: the values themselves are never printed."""
        out = [
            f"identifiers given: {self.identifiers_given} ({self.unknown} never seen in the warehouse)",
            f"identities forgotten (given + seen only on the person's records): {self.identities}",
            f"records removed: {self.records}",
        ]
        out += [f"  raw.{table}: {n} rows deleted" for table, n in sorted(self.raw_rows_deleted.items())]
        out += [
            f"  raw.quarantine: {self.quarantine_rows_deleted} rows deleted",
            f"merge-log entries redacted: {self.merge_log_rows_redacted}",
            f"tombstones added: {self.tombstones_added}",
        ]
        return out


def ensure_tombstones(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"create schema if not exists {PRIVACY_SCHEMA}")
    con.execute(
        f"create table if not exists {TOMBSTONES} (id_hmac varchar primary key, id_type varchar, "
        "forgotten_at timestamp)"
    )


def load_tombstones(con: duckdb.DuckDBPyConnection) -> set[str]:
    if not _exists(con, TOMBSTONES):
        return set()
    return {row[0] for row in con.sql(f"select id_hmac from {TOMBSTONES}").fetchall()}


def normalize_identifiers(given: pl.DataFrame, config: IdentityConfig) -> pl.DataFrame:
    """(id_type, scope, value) as a person states them → normalized identities; unusable ones raise."""
    frame = given.select(
        pl.lit("forget").alias("source"),
        pl.int_range(pl.len()).cast(pl.String).alias("record_id"),
        pl.col("id_type"),
        pl.col("scope").fill_null(""),
        pl.col("value").alias("id_value"),
    )
    normalized = identity.normalize_observations(frame, config)
    # A junk or blocklisted value (13800138000, a test number) is typed on many people's records: forgetting
    # it would delete all of them and drop their future rows.
    bad = normalized.filter(
        pl.col("id_value").is_null() | ~pl.col("usable") | ~pl.col("id_type").is_in(list(FORGETTABLE_TYPES))
    )
    if bad.height:
        # The row number, not the value: this message may end up in a ticket.
        rows = ", ".join(str(int(r) + 1) for r in bad["record_id"].to_list()[:10])
        raise ValueError(f"identifiers on lines {rows} are not usable as {', '.join(bad['id_type'].unique())}")
    return with_phone_hashes(normalized.select(IDENTITY_KEY).unique())


def with_phone_hashes(identities: pl.DataFrame) -> pl.DataFrame:
    """A forgotten phone is forgotten in the MD5/SHA-256 form partners send too."""
    phones = identities.filter(pl.col("id_type") == "phone")["id_value"].to_list()
    hashed = [("phone_md5", "", phone_hashes(p)[0]) for p in phones] + [
        ("phone_sha256", "", phone_hashes(p)[1]) for p in phones
    ]
    extra = pl.DataFrame(hashed, schema={k: pl.String for k in IDENTITY_KEY}, orient="row")
    return pl.concat([identities.cast(pl.String), extra]).unique()


def _exists(con, name: str) -> bool:
    return table_exists(con, *name.split("."))


def _table(con, name: str) -> pl.DataFrame | None:
    schema, table = name.split(".")
    return con.sql(f'select * from "{schema}"."{table}"').pl() if _exists(con, name) else None


# The person's part of identity.observations, found where it lives: a request names a handful of identifiers, and
# reading the table into memory to join them was the whole of its 27M rows (several GB) per request.
_OBSERVED = (
    "(select source, record_id, id_type, scope, id_value from identity.observations where id_value is not null)"
)
_KEY = "using (id_type, scope, id_value)"
_SCOPE_SQL = {
    "records": f"select distinct source, record_id from {_OBSERVED} semi join __forget_given {_KEY}",
    "unknown": f"select count(*) from __forget_given anti join {_OBSERVED} {_KEY}",
    "on_records": (
        f"select distinct id_type, scope, id_value from {_OBSERVED} "
        "semi join __forget_records using (source, record_id)"
    ),
    # identities on the records that some other record also carries: they are not only the person's
    "elsewhere": (
        f"select distinct id_type, scope, id_value from {_OBSERVED} semi join __forget_on_records {_KEY} "
        "anti join __forget_records using (source, record_id)"
    ),
    "users": (
        f"select user_id from identity.id_map semi join __forget_given {_KEY} union "
        "select user_id from identity.record_map semi join __forget_records using (source, record_id)"
    ),
    "user_records": "select source, record_id from identity.record_map semi join __forget_users using (user_id)",
    "user_identities": "select id_type, scope, id_value from identity.id_map semi join __forget_users using (user_id)",
}


def _scope_query(con, name: str, **frames: pl.DataFrame) -> pl.DataFrame:
    """One of `_SCOPE_SQL`'s queries, with the given frames registered as `__forget_<name>` while it runs."""
    for frame_name, frame in frames.items():
        _register(con, f"__forget_{frame_name}", frame)
    try:
        return con.sql(_SCOPE_SQL[name]).pl()
    finally:
        for frame_name in frames:
            con.unregister(f"__forget_{frame_name}")


def person_scope(
    con: duckdb.DuckDBPyConnection, given: pl.DataFrame, whole_user: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """(identities, records, unknown): the person's identities and (source, record_id)s, per the module doc."""
    if not _exists(con, "identity.observations"):
        return given, pl.DataFrame(schema={"source": pl.String, "record_id": pl.String}), given.height
    given = given.select(IDENTITY_KEY).cast(pl.String)
    records = _scope_query(con, "records", given=given)
    unknown = int(_scope_query(con, "unknown", given=given).item())
    if whole_user:
        users = _scope_query(con, "users", given=given, records=records)
        records = pl.concat([records, _scope_query(con, "user_records", users=users)]).unique()
        on_records = _scope_query(con, "on_records", records=records)
        identities = pl.concat([given, _scope_query(con, "user_identities", users=users), on_records]).unique()
    else:
        on_records = _scope_query(con, "on_records", records=records)
        elsewhere = _scope_query(con, "elsewhere", on_records=on_records, records=records)
        exclusive = on_records.join(elsewhere, on=IDENTITY_KEY, how="anti")
        identities = pl.concat([given, exclusive]).unique()
    return with_phone_hashes(identities), records, unknown


def refuse_shared(con, identities: pl.DataFrame) -> None:
    """A value resolution found shared (a store's front-desk phone) belongs to many people, not to the requester."""
    blocked = _table(con, "identity.blocked_values")
    if blocked is None:
        return
    hits = blocked.join(identities, on=IDENTITY_KEY, how="semi")
    if hits.height:
        reasons = ", ".join(sorted(set(hits["reason"].to_list())))
        raise ValueError(
            f"{hits.height} of the identifiers given are blocked in identity.blocked_values ({reasons}): they are "
            "on many people's records. Forget the person by their other identifiers, or remove the value by hand."
        )


def _register(con, name: str, frame: pl.DataFrame) -> None:
    con.register(name, frame.to_arrow())


def delete_raw_rows(con, specs: list[RecordSpec], records: pl.DataFrame) -> dict[str, int]:
    """Delete every raw row of the records, in every table declared in observations.yml."""
    deleted: dict[str, int] = {}
    for spec in specs:
        ids = records.filter(pl.col("source") == spec.source)["record_id"]
        if spec.record_id_suffix:
            ids = ids.filter(ids.str.ends_with(spec.record_id_suffix)).str.head(-len(spec.record_id_suffix))
        if not ids.len():
            continue
        _register(con, "__forget_ids", pl.DataFrame({"record_id": ids.unique()}))
        try:
            count = con.execute(
                f'delete from raw."{spec.table}" where cast("{spec.record_id}" as varchar) in '
                "(select record_id from __forget_ids)"
            ).fetchall()[0][0]
        finally:
            con.unregister("__forget_ids")
        deleted[spec.table] = deleted.get(spec.table, 0) + int(count)
    return deleted


# what a phone's cell may hold between its digits (those that phone normalization drops, and a plus sign)
_SEPARATORS = f"[+{PHONE_SEPARATOR_CHARS}]"


def delete_quarantine(con, identities: pl.DataFrame, raw_values: list[str]) -> int:
    """Quarantine keeps one raw cell per bad row: drop those holding one of the person's values, in any form."""
    values = sorted({v for v in [*identities["id_value"].to_list(), *raw_values] if v and len(v) >= 6})
    if not values or not _exists(con, "raw.quarantine"):
        return 0
    _register(con, "__forget_values", pl.DataFrame({"v": values}))
    try:
        return int(
            con.execute(
                "delete from raw.quarantine where exists (select 1 from __forget_values "
                f"where contains(regexp_replace(coalesce(raw_value, ''), '{_SEPARATORS}', '', 'g'), v) "
                "or contains(coalesce(raw_value, ''), v))"
            ).fetchall()[0][0]
        )
    finally:
        con.unregister("__forget_values")


def redact_merge_logs(con, identities: pl.DataFrame, records: pl.DataFrame) -> int:
    """Merge-log entries keep their place in history (old → new ids) but lose the person's link."""
    total = 0
    _register(con, "__forget_identities", identities)
    _register(con, "__forget_records", records)
    try:
        for schema in ("identity", "identity_state"):
            if not _exists(con, f"{schema}.merge_log"):
                continue
            total += int(
                con.execute(
                    f"update {schema}.merge_log as m set id_value = null, record_id = null, "
                    "reason = m.reason || ' (forgotten)' "
                    "where exists (select 1 from __forget_identities f where f.id_type = m.id_type "
                    "and f.scope = coalesce(m.scope, '') and f.id_value = m.id_value) "
                    "or exists (select 1 from __forget_records r where r.source = m.source "
                    "and r.record_id = m.record_id)"
                ).fetchall()[0][0]
            )
    finally:
        con.unregister("__forget_identities")
        con.unregister("__forget_records")
    return total


def add_tombstones(con, identities: pl.DataFrame, key: bytes) -> int:
    ensure_tombstones(con)
    rows = [(identity_hmac(key, t, s, v), t, datetime.now().replace(microsecond=0))
            for t, s, v in identities.select(IDENTITY_KEY).iter_rows()]
    before = con.sql(f"select count(*) from {TOMBSTONES}").fetchall()[0][0]
    con.executemany(f"insert or ignore into {TOMBSTONES} values (?, ?, ?)", rows)
    return con.sql(f"select count(*) from {TOMBSTONES}").fetchall()[0][0] - before


def forget(
    con: duckdb.DuckDBPyConnection,
    given: pl.DataFrame,
    specs: list[RecordSpec],
    config: IdentityConfig,
    key: bytes,
    whole_user: bool = False,
) -> ForgetReport:
    """Everything but the rebuild, in one transaction: a failure leaves the warehouse as it was."""
    identities_given = normalize_identifiers(given, config)
    refuse_shared(con, identities_given)
    report = ForgetReport(identifiers_given=given.height)
    identities, records, report.unknown = person_scope(con, identities_given, whole_user)
    raw_values = []
    if _exists(con, "identity.observations"):
        _register(con, "__forget_identities", identities)
        try:
            raw_values = [
                value
                for (value,) in con.execute(
                    "select distinct raw_value from identity.observations semi join __forget_identities "
                    f"{_KEY} where raw_value is not null"
                ).fetchall()
            ]
        finally:
            con.unregister("__forget_identities")
    report.identities = identities.height
    report.records = records.height
    con.execute("begin transaction")
    try:
        report.tombstones_added = add_tombstones(con, identities, key)
        report.raw_rows_deleted = delete_raw_rows(con, specs, records)
        report.quarantine_rows_deleted = delete_quarantine(con, identities, raw_values)
        report.merge_log_rows_redacted = redact_merge_logs(con, identities, records)
        # A blocked candidate resolution holds the person too; the next run writes it again if needed.
        for (table,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'identity_candidate'"
        ).fetchall():
            con.execute(f'drop table identity_candidate."{table}"')
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    # Fold the WAL into the file so the deleted rows are not kept in a log beside it.
    con.execute("checkpoint")
    return report


# ------------------------------------------------------------------------------------------------ at ingest


class TombstoneFilter:
    """Drops rows of a raw table carrying a tombstoned identifier, before they are stored anywhere."""

    def __init__(self, tombstones: set[str], specs: list[RecordSpec], config: IdentityConfig, key: bytes):
        self.tombstones = tombstones
        self.config = config
        self.key = key
        self.by_table: dict[str, list] = {}
        for spec in specs:
            self.by_table.setdefault(spec.table, []).extend(spec.identifiers)

    def __call__(self, source: str, rows: pl.DataFrame) -> tuple[pl.DataFrame, int]:
        identifiers = self.by_table.get(source)
        if not self.tombstones or not identifiers or rows.height == 0:
            return rows, 0
        indexed = rows.with_row_index("__row")
        parts = []
        for ident in identifiers:
            if ident.column not in rows.columns:
                continue
            value = pl.col(ident.column).cast(pl.String)
            scope = pl.col(ident.scope_column).cast(pl.String) if ident.scope_column else pl.lit("")
            part = indexed.select(
                pl.col("__row").cast(pl.String).alias("record_id"), scope.alias("scope"), value.alias("id_value")
            ).filter(pl.col("id_value").is_not_null())
            if ident.list == "json":
                part = part.with_columns(
                    pl.col("id_value").map_elements(_json_list, return_dtype=pl.List(pl.String))
                ).explode("id_value").filter(pl.col("id_value").is_not_null())
            parts.append(part.with_columns(pl.lit(ident.id_type).alias("id_type")))
        if not parts:
            return rows, 0
        observed = pl.concat([p.select("record_id", "id_type", "scope", "id_value") for p in parts])
        normalized = identity.normalize_observations(
            observed.with_columns(pl.lit(source).alias("source")), self.config
        ).filter(pl.col("id_value").is_not_null())
        # in bulk: a raw table's every identifier is hashed at each ingest once anyone has been forgotten
        hashes = identity_hmac_series(self.key, normalized)
        hit = normalized.select("record_id").with_columns(hashes.alias("h")).filter(
            pl.col("h").is_in(list(self.tombstones))
        )
        drop = set(int(r) for r in hit["record_id"].to_list())
        if not drop:
            return rows, 0
        keep = indexed.filter(~pl.col("__row").is_in(list(drop))).drop("__row")
        return keep, len(drop)


def _json_list(text: str) -> list[str] | None:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return [str(v) for v in value if v is not None] if isinstance(value, list) else None
