"""The resources every area shares: the warehouse file and the project's settings."""

from __future__ import annotations

from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource
from dagster_duckdb import DuckDBResource

from pipelines.defs.dbt import dbt_executable, dbt_project
from pipelines.settings import Settings


class OneIdPaths(ConfigurableResource):
    """Folders a run reads (the landing folder of exports, the user-editable config) and the analyst database
    file it publishes."""

    landing_dir: str
    config_dir: str
    analyst_database: str = ""


def build_resources(settings: Settings | None = None) -> dict:
    settings = settings or Settings.from_env()
    settings.database.parent.mkdir(parents=True, exist_ok=True)
    settings.export_for_dbt()
    return {
        "warehouse": DuckDBResource(database=str(settings.database)),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
        "paths": OneIdPaths(
            landing_dir=str(settings.landing_dir),
            config_dir=str(settings.config_dir),
            analyst_database=str(settings.analyst_path),
        ),
    }
