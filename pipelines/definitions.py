"""The one Dagster entry point: every asset, check, job and schedule of OneID, merged from pipelines/defs."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from pipelines.defs.checks import ingest_checks
from pipelines.defs.dbt import oneid_dbt_models
from pipelines.defs.identity import identity_checks, identity_resolution
from pipelines.defs.ingest import raw_assets
from pipelines.defs.resources import build_resources

FULL_RUN_JOB_NAME = "oneid_full_run"

full_run_job = define_asset_job(
    FULL_RUN_JOB_NAME,
    selection=AssetSelection.all(),
    description="Load new exports, resolve identities and rebuild every dbt model.",
)

defs = Definitions(
    assets=[*raw_assets, identity_resolution, oneid_dbt_models],
    asset_checks=[*ingest_checks, *identity_checks],
    jobs=[full_run_job],
    resources=build_resources(),
    # DuckDB allows one writing process per file: steps run one after another in the run's process.
    executor=in_process_executor,
)
