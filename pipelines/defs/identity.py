"""Identity resolution as Dagster assets: raw tables → observations → one user id per person."""

from pathlib import Path

import polars as pl
from dagster import AssetExecutionContext, AssetKey, AssetOut, MetadataValue, Output, multi_asset
from dagster_duckdb import DuckDBResource

import identity
from pipelines.defs.ingest import RAW_ASSET_KEYS
from pipelines.defs.resources import OneIdPaths
from pipelines.observations import load_record_specs, observations_sql, records_sql

IDENTITY_TABLES = {
    "observations": "One row per identifier seen on a record (normalized value, strength, time first seen).",
    "record_map": "One row per record of every raw source: the unified user id it belongs to.",
    "id_map": "One row per usable identity (id_type, scope, value): the unified user id holding it.",
    "rejected_links": "One row per link refused because it would give a user two values of a unique type.",
    "blocked_values": "One row per identifier value that links nothing: junk, blocklisted or shared.",
}


def read_observations(con, config_dir: Path) -> pl.DataFrame:
    """All observations, plus an empty one for each record that carries no identifier at all.

    The empty observation is unusable by construction, so such a record still comes out with its own user.
    """
    specs = load_record_specs(config_dir / "observations.yml")
    observed = con.sql(observations_sql(specs)).pl()
    records = con.sql(records_sql(specs)).pl()
    bare = records.join(observed.select("source", "record_id").unique(), on=["source", "record_id"], how="anti")
    bare = bare.with_columns(
        id_type=pl.lit("phone"), scope=pl.lit(""), id_value=pl.lit(None, dtype=pl.String), strength=pl.lit("weak")
    ).select(observed.columns)
    return pl.concat([observed, bare.cast(observed.schema)])


def write_table(con, schema: str, table: str, frame: pl.DataFrame) -> None:
    arrow_table = frame.to_arrow()  # noqa: F841 -- DuckDB scans the local variable by name
    con.execute(f'create schema if not exists "{schema}"')
    con.execute(f'create or replace table "{schema}"."{table}" as select * from arrow_table')


@multi_asset(
    outs={
        name: AssetOut(key=AssetKey(["identity", name]), description=description, group_name="identity")
        for name, description in IDENTITY_TABLES.items()
    },
    deps=list(RAW_ASSET_KEYS.values()),
    compute_kind="python",
)
def identity_resolution(context: AssetExecutionContext, warehouse: DuckDBResource, paths: OneIdPaths):
    """Resolves every record of every raw source to one unified user id, with the rules of config/identity.yml."""
    config_dir = Path(paths.config_dir)
    config = identity.load_config(config_dir / "identity.yml")
    with warehouse.get_connection() as con:
        observations = read_observations(con, config_dir)
        resolution = identity.resolve(observations, config)
        tables = {
            "observations": resolution.observations,
            "record_map": resolution.record_map,
            "id_map": resolution.id_map,
            "rejected_links": resolution.rejected_links,
            "blocked_values": resolution.blocked_values,
        }
        con.execute("begin transaction")
        for name, frame in tables.items():
            write_table(con, "identity", name, frame)
        con.execute("commit")
    stats = resolution.stats
    context.log.info(f"identity resolution: {stats}")
    for name, frame in tables.items():
        metadata = {"rows": MetadataValue.int(frame.height)}
        if name == "record_map":
            metadata.update(
                {
                    "users": MetadataValue.int(int(stats["users"])),
                    "largest_user_size": MetadataValue.int(int(stats["largest_user_size"])),
                    "links_rejected": MetadataValue.int(int(stats["links_rejected"])),
                    "values_blocked": MetadataValue.int(int(stats["values_blocked"])),
                }
            )
        yield Output(None, output_name=name, metadata=metadata)


identity_checks: list = []
