"""Session fixtures: one dbt build and one dbt parse shared by every test in tests/dbt."""

from __future__ import annotations

import pytest

from dbt_warehouse import DbtParse, DbtRun, build_warehouse, run_dbt


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
