"""The dbt project as Dagster assets: staging, intermediate and marts, downstream of ingest and identity.

dbt sources carry `meta.dagster.asset_key` naming the ingest and identity assets, so Dagster draws one
graph from the landing files to the marts instead of two disconnected ones.
"""

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey
from dagster._utils.env import using_dagster_dev
from dagster_duckdb import DuckDBResource
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from pipelines.faults import crash_point
from pipelines.settings import DBT_PROJECT_DIR, Settings

# dbt's profile reads the warehouse path from the environment, also while the manifest is parsed.
Settings.from_env().export_for_dbt()



def dbt_executable() -> str:
    """The dbt installed beside this Python, so runs work whether or not the venv is on PATH."""
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def dbt_parse_args() -> list[str]:
    return ["parse", "--quiet"]


dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR)
if using_dagster_dev() or not dbt_project.manifest_path.exists():
    # `make` parses before every run; this covers `dagster dev` picking up edits and a clone used without make.
    DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()).cli(
        dbt_parse_args(), target_path=dbt_project.target_path
    ).wait()

_LAYER_GROUPS = {"staging": "staging", "intermediate": "intermediate", "marts": "marts"}


def dbt_layer(dbt_resource_props: Mapping[str, Any]) -> str | None:
    """The folder directly under models/ (staging, intermediate, marts), or None for seeds and the like."""
    fqn = dbt_resource_props.get("fqn") or []
    return fqn[1] if dbt_resource_props.get("resource_type") == "model" and len(fqn) > 2 else None


class OneIdDbtTranslator(DagsterDbtTranslator):
    """Keys models by their warehouse schema (`marts/fct_orders`) and groups them by layer.

    Sources keep the key from their `meta.dagster.asset_key`, which is how they join the ingest and identity
    assets in one lineage graph.
    """

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props.get("resource_type") == "source":
            return super().get_asset_key(dbt_resource_props)
        schema = dbt_resource_props.get("schema") or "main"
        return AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        layer = dbt_layer(dbt_resource_props)
        if layer in _LAYER_GROUPS:
            return _LAYER_GROUPS[layer]
        if dbt_resource_props.get("resource_type") == "seed":
            return "lookups"
        return super().get_group_name(dbt_resource_props)


translator = OneIdDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def dbt_build_args() -> list[str]:
    """`dbt build` runs models, seeds and tests together so a failing test stops what depends on it."""
    return ["build"]


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator)
def oneid_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: DuckDBResource):
    """Every dbt model and seed; grains are stated in each model's YAML description."""
    # `warehouse` is not queried here: requiring it holds the run's warehouse lock while dbt writes the file.
    for index, event in enumerate(dbt.cli(dbt_build_args(), context=context).stream()):
        if index == 3:
            crash_point("dbt")
        yield event
