"""Runs the OneID pipeline in its own process for the crash tests: `python crash_driver.py all|upstream`.

Settings come from the environment (ONEID_DATABASE, ONEID_LANDING_DIR); ONEID_TEST_CRASH_AT picks where the
run kills itself. Ingest's block size is made tiny so that small test files go through the multi-commit path
(in-flight marker) that large exports take.
"""

import sys

from dagster import DagsterInstance, materialize

import pipelines.ingest.load as load
from pipelines.defs.dbt import oneid_dbt_models
from pipelines.defs.identity import identity_resolution
from pipelines.defs.ingest import raw_assets
from pipelines.defs.resources import build_resources

load.ROW_GROUP_ROWS = 64
load.COMMIT_ROWS = 128

assets = [*raw_assets, identity_resolution]
if sys.argv[1] == "all":
    assets.append(oneid_dbt_models)
result = materialize(assets, resources=build_resources(), instance=DagsterInstance.ephemeral(), raise_on_error=False)
sys.exit(0 if result.success else 1)
