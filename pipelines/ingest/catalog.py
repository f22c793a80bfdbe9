"""The `raw` schema of docs/data-contracts.md section 2, as plain data.

This module imports nothing outside the standard library on purpose: the Dagster definitions import
`CANONICAL_SOURCES` to declare one asset per raw table without paying for polars/duckdb at import time,
and the DDL lives here so there is exactly one place that spells out the raw tables.
"""

from __future__ import annotations

RAW_SCHEMA = "raw"

# Order matters: the Dagster side creates assets in this order, and it matches the contract table.
CANONICAL_SOURCES: tuple[str, ...] = (
    "oa_followers",
    "mp_logins",
    "wecom_contacts",
    "orders",
    "crm_members",
    "referrals",
)

V = "VARCHAR"
TS = "TIMESTAMP"
MONEY = "DECIMAL(18,2)"

# Canonical columns per raw table, without record_id (always first) and the load columns (always last).
# Columns the contract calls "JSON text" are VARCHAR holding a JSON document.
CANONICAL_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "oa_followers": (
        ("appid", V), ("openid", V), ("unionid", V), ("subscribe", "INTEGER"), ("subscribed_at", TS),
        ("subscribe_scene", V), ("qr_scene", "BIGINT"), ("qr_scene_str", V), ("tagid_list", V), ("remark", V),
    ),
    "mp_logins": (
        ("log_id", V), ("appid", V), ("openid", V), ("unionid", V), ("phone", V), ("logged_in_at", TS),
    ),
    "wecom_contacts": (
        ("corp_id", V), ("external_userid", V), ("contact_name", V), ("contact_type", "INTEGER"),
        ("gender", "INTEGER"), ("unionid", V), ("staff_userid", V), ("added_at", TS), ("add_way", "INTEGER"),
        ("state", V), ("remark", V), ("remark_mobiles", V), ("tags", V),
    ),
    "orders": (
        ("platform", V), ("order_id", V), ("appid", V), ("buyer_openid", V), ("buyer_unionid", V),
        ("buyer_account", V), ("buyer_phone", V), ("receiver_name", V), ("receiver_phone", V),
        ("receiver_address", V), ("receiver_province", V), ("order_status", V), ("raw_status", V), ("paid_amount", MONEY), ("refunded_amount", MONEY),
        ("created_at", TS), ("paid_at", TS),
    ),
    "crm_members": (
        ("crm_name", V), ("member_id", V), ("phone", V), ("member_name", V), ("gender", V), ("birthday", "DATE"),
        ("declared_tier", V), ("points", "BIGINT"), ("registered_at", TS), ("lifetime_spend", MONEY),
        ("source_channel", V),
    ),
    "referrals": (
        ("invite_id", V), ("appid", V), ("inviter_openid", V), ("inviter_unionid", V), ("invitee_openid", V),
        ("invitee_unionid", V), ("invited_at", TS), ("campaign", V),
    ),
}

LOAD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_source_file", V), ("_file_hash", V), ("_row_number", "BIGINT"), ("_layout", V), ("_loaded_at", TS),
)

QUARANTINE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("source", V), ("source_file", V), ("file_hash", V), ("row_number", "BIGINT"), ("column_name", V),
    ("raw_value", V), ("reason", V), ("loaded_at", TS),
)

LOAD_LOG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("source", V), ("source_file", V), ("file_hash", V), ("layout", V), ("status", V), ("rows_loaded", "BIGINT"),
    ("rows_quarantined", "BIGINT"), ("message", V), ("loaded_at", TS),
    # rows dropped because they carry an identifier of a forgotten person (pipelines/forget.py); no values kept
    ("rows_forgotten", "BIGINT"),
)

# Ingest's own bookkeeping, not data: a file being loaded in several commits (large files are committed
# block by block so that DuckDB does not hold the whole file in memory) has a row here until its load_log
# row commits. A row left behind by a crash tells the next run which partial rows to delete first.
INFLIGHT_TABLE = f"{RAW_SCHEMA}._ingest_inflight"
INFLIGHT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("source", V), ("source_file", V), ("file_hash", V), ("started_at", TS),
)

ORDER_STATUSES: tuple[str, ...] = ("unpaid", "paid", "partially_refunded", "refunded", "cancelled")


def raw_table(source: str) -> str:
    """Qualified table name for a canonical source, e.g. ``raw.orders``."""
    if source not in CANONICAL_COLUMNS:
        raise KeyError(f"unknown canonical source {source!r}; known: {', '.join(CANONICAL_SOURCES)}")
    return f"{RAW_SCHEMA}.{source}"


def table_columns(source: str) -> tuple[tuple[str, str], ...]:
    """All columns of ``raw.<source>`` in table order: record_id, canonical columns, load columns."""
    return (("record_id", V), *CANONICAL_COLUMNS[source], *LOAD_COLUMNS)


def _create(table: str, columns: tuple[tuple[str, str], ...]) -> str:
    body = ",\n    ".join(f"{name} {sql_type}" for name, sql_type in columns)
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    {body}\n)"


def add_missing_columns_ddl(table: str, existing: set[str], wanted: tuple[tuple[str, str], ...]) -> list[str]:
    """ALTER statements giving a raw table created by an older OneID the canonical columns added since.

    Only additions: raw is append-only history, so a column is never dropped or retyped in place; rows loaded
    before the column existed keep NULL there, which is what their exports said.
    """
    return [f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}" for name, sql_type in wanted if name not in existing]


def ddl() -> list[str]:
    """CREATE statements for the whole raw schema (idempotent)."""
    statements = [f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}"]
    statements += [_create(raw_table(s), table_columns(s)) for s in CANONICAL_SOURCES]
    statements.append(_create(f"{RAW_SCHEMA}.quarantine", QUARANTINE_COLUMNS))
    statements.append(_create(f"{RAW_SCHEMA}.load_log", LOAD_LOG_COLUMNS))
    statements.append(_create(INFLIGHT_TABLE, INFLIGHT_COLUMNS))
    # warehouses created before the column existed
    statements.append(f"ALTER TABLE {RAW_SCHEMA}.load_log ADD COLUMN IF NOT EXISTS rows_forgotten BIGINT")
    return statements
