"""Ingest as Dagster assets: one asset per canonical raw table, loading every new file in the landing folder."""

from pathlib import Path

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset
from dagster_duckdb import DuckDBResource

import identity
from pipelines import ingest
from pipelines.defs.resources import OneIdPaths

RAW_TABLE_GRAINS = {
    "oa_followers": "one row per Official Account follower record per export file it appears in",
    "mp_logins": "one row per mini-program login or phone authorization",
    "wecom_contacts": "one row per (WeCom external contact, staff member) per export file",
    "orders": "one row per shop order per export file it appears in (status history is kept)",
    "crm_members": "one row per CRM member per export file",
    "referrals": "one row per invitation (inviter → invitee)",
}
RAW_ASSET_KEYS = {source: AssetKey(["raw", source]) for source in RAW_TABLE_GRAINS}


def tombstone_filter(con, config_dir: Path):
    """Ingest's drop hook for forgotten people (pipelines/forget.py); None while nobody has been forgotten, so
    that a warehouse without deletions needs no HMAC key to load files."""
    from identity.privacy import hmac_key
    from pipelines.forget import TombstoneFilter, load_tombstones
    from pipelines.observations import load_record_specs

    tombstones = load_tombstones(con)
    if not tombstones:
        return None
    key, _ = hmac_key()
    return TombstoneFilter(
        tombstones,
        load_record_specs(config_dir / "observations.yml"),
        identity.load_config(config_dir / "identity.yml"),
        key,
    )


def build_raw_asset(source: str) -> AssetsDefinition:
    @asset(
        key=RAW_ASSET_KEYS[source],
        group_name="ingest",
        compute_kind="polars",
        description=(
            f"raw.{source}: {RAW_TABLE_GRAINS[source]}, append-only, with the file, its hash and row number. "
            "Files already loaded (by content hash) are skipped; unusable rows go to raw.quarantine."
        ),
    )
    def _raw_asset(context: AssetExecutionContext, warehouse: DuckDBResource, paths: OneIdPaths):
        config = ingest.load_config(Path(paths.config_dir))
        with warehouse.get_connection() as con:
            drop_rows = tombstone_filter(con, Path(paths.config_dir))
            report = ingest.ingest_source(con, source, Path(paths.landing_dir), config, drop_rows)
        for file in report.files:
            log = context.log.warning if file.status == "rejected" else context.log.info
            log(f"{file.path}: {file.status}, {file.rows_loaded} rows loaded, "
                f"{file.rows_quarantined} quarantined. {file.message or ''}".strip())
        return MaterializeResult(
            metadata={
                "files_seen": MetadataValue.int(len(report.files)),
                "files_loaded": MetadataValue.int(sum(f.status == "loaded" for f in report.files)),
                "files_rejected": MetadataValue.int(sum(f.status == "rejected" for f in report.files)),
                "rows_loaded": MetadataValue.int(report.rows_loaded),
                "rows_quarantined": MetadataValue.int(report.rows_quarantined),
                "rows_forgotten": MetadataValue.int(report.rows_forgotten),
            }
        )

    _raw_asset.__doc__ = f"Loads new export files into raw.{source}."
    return _raw_asset


raw_assets = [build_raw_asset(source) for source in RAW_TABLE_GRAINS]
