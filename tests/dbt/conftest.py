"""Session fixtures: one dbt build and one dbt parse shared by every test in tests/dbt."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbt_warehouse import DbtParse, DbtRun, build_warehouse, run_dbt

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_LANDING = REPO_ROOT / "data" / "sample" / "landing"


@pytest.fixture(scope="session")
def dbt_build(tmp_path_factory) -> DbtRun:
    work_dir = tmp_path_factory.mktemp("dbt_build")
    database = work_dir / "oneid.duckdb"
    build_warehouse(database)
    result = run_dbt(["build"], database, work_dir)
    return DbtRun(database=database, result=result)


@pytest.fixture(scope="session")
def dbt_parse(tmp_path_factory) -> DbtParse:
    work_dir = tmp_path_factory.mktemp("dbt_parse")
    # parse never connects, but the profile still renders env_var('ONEID_DATABASE').
    result = run_dbt(["parse"], work_dir / "unused.duckdb", work_dir)
    assert result.success, result.exception
    return DbtParse(manifest=result.result, manifest_json=work_dir / "target" / "manifest.json")


@pytest.fixture(scope="session")
def sample_warehouse(tmp_path_factory) -> Path:
    """The bundled sample brand through ingest and identity (Dagster assets, as tests/e2e does), then `dbt build`
    into a temporary warehouse; built once per session for every test that reads marts on the sample."""
    from dagster import materialize

    from pipelines.defs.identity import identity_resolution
    from pipelines.defs.ingest import raw_assets
    from pipelines.defs.resources import build_resources
    from pipelines.settings import DATABASE_ENV, Settings

    work = tmp_path_factory.mktemp("growth_sample")
    settings = Settings(
        database=work / "oneid.duckdb",
        landing_dir=SAMPLE_LANDING,
        config_dir=REPO_ROOT / "config",
        truth_file=REPO_ROOT / "data" / "sample" / "truth" / "records.csv.gz",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATABASE_ENV, str(settings.database))
        result = materialize([*raw_assets, identity_resolution], resources=build_resources(settings),
                             raise_on_error=True)
    assert result.success
    # dbt runs from the project files (not the manifest Dagster was started with), like tests/dbt.
    build = run_dbt(["build"], settings.database, work)
    assert build.success, build.exception
    failed = {str(r.node.name): str(r.status) for r in build.result.results
              if str(r.status) not in ("success", "pass", "warn")}
    assert failed == {}
    return settings.database
