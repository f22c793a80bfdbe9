"""The one Dagster entry point: every asset, check, job, schedule and sensor of OneID, merged from pipelines/defs."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from pipelines.defs.checks import ingest_checks
from pipelines.defs.dbt import oneid_dbt_models
from pipelines.defs.identity import identity_checks, identity_resolution
from pipelines.defs.ingest import raw_assets
from pipelines.defs.publish import publish_assets
from pipelines.defs.resources import build_resources
from pipelines.defs.schedules import build_daily_schedule
from pipelines.defs.sensors import build_landing_sensor
from pipelines.settings import Settings

FULL_RUN_JOB_NAME = "oneid_full_run"

full_run_job = define_asset_job(
    FULL_RUN_JOB_NAME,
    selection=AssetSelection.all(),
    description="Load new exports, resolve identities, rebuild every dbt model and publish the analyst database.",
)


def build_defs(settings: Settings | None = None) -> Definitions:
    """The Definitions for one set of settings (the environment's by default; tests pass temporary folders)."""
    settings = settings or Settings.from_env()
    return Definitions(
        assets=[*raw_assets, identity_resolution, oneid_dbt_models, *publish_assets],
        asset_checks=[*ingest_checks, *identity_checks],
        jobs=[full_run_job],
        schedules=[build_daily_schedule(full_run_job, settings)],
        sensors=[build_landing_sensor(full_run_job, running=settings.automation_running)],
        resources=build_resources(settings),
        # DuckDB allows one writing process per file: steps run one after another in the run's process.
        executor=in_process_executor,
    )


defs = build_defs()
