"""The GX suites as Dagster asset checks: part of oneid_full_run, passing on the sample, blocking on broken rows.

`materialize([...assets])` (the e2e test) does not run asset checks, so this test executes a job selected like
oneid_full_run (AssetSelection.all(), in-process executor) over the ingest assets, their checks and an asset
downstream of every raw table (as identity is), on the bundled sample landing folder in a temporary warehouse,
then doctors the raw tables and runs it again.
"""

from __future__ import annotations

import duckdb
import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    Definitions,
    asset,
    define_asset_job,
    in_process_executor,
)

from pipelines.defs.checks import CONTRACT_CHECK, QUALITY_CHECK, check_results, ingest_checks
from pipelines.defs.ingest import RAW_ASSET_KEYS, raw_assets
from pipelines.defs.resources import build_resources
from pipelines.definitions import FULL_RUN_JOB_NAME, defs
from pipelines.settings import DATABASE_ENV, REPO_ROOT, Settings
from pipelines.validation import RuleResult, RuleSpec, TableValidation

DOWNSTREAM = AssetKey(["test", "reads_every_raw_table"])


@asset(key=DOWNSTREAM, deps=list(RAW_ASSET_KEYS.values()))
def reads_every_raw_table() -> None:
    """Stands in for identity resolution (which depends on every raw table the same way)."""


def test_full_run_job_runs_a_contract_and_a_quality_check_per_raw_table():
    job = defs.resolve_job_def(FULL_RUN_JOB_NAME)
    nodes = {node.name for node in job.graph.node_defs}
    check_keys = {key for checks in ingest_checks for key in checks.check_keys}
    for source, asset_key in RAW_ASSET_KEYS.items():
        assert f"validate_raw_{source}" in nodes
        assert {(asset_key, CONTRACT_CHECK), (asset_key, QUALITY_CHECK)} <= {
            (key.asset_key, key.name) for key in check_keys
        }
    graph = defs.resolve_asset_graph()
    specs = {spec.key: spec for checks in ingest_checks for spec in checks.check_specs}
    for key, spec in specs.items():
        assert key in graph.asset_check_keys
        assert spec.blocking is (key.name == CONTRACT_CHECK), key
    # the blocking contract checks gate identity resolution and dbt: their steps wait for the check outputs
    for node in ("identity_resolution", "oneid_dbt_models"):
        upstream = {
            (o.node.name, o.output_def.name)
            for o in job.graph.dependency_structure.all_upstream_outputs_from_node(node)
            if o.node.name.startswith("validate_raw_")
        }
        assert upstream == {(f"validate_raw_{s}", f"raw__{s}_{CONTRACT_CHECK}") for s in RAW_ASSET_KEYS}, node


def test_check_results_split_one_suite_into_contract_and_quality():
    phone = RuleSpec("mp_logins", "regex", column="phone", severity="warn", pattern="^(a|b)$", pattern_name="p")
    openid = RuleSpec("mp_logins", "not_null", column="openid", severity="error")
    validation = TableValidation(
        table="mp_logins", rows_in_table=10, rows_validated=10, scope="all rows", seconds=0.5,
        results=(
            RuleResult(openid, success=True, element_count=10, unexpected_count=0, unexpected_percent=0.0),
            RuleResult(phone, success=False, element_count=10, unexpected_count=4, unexpected_percent=40.0,
                       examples=("139****5678",)),
        ),
    )
    contract, quality = check_results(validation)
    assert (contract.check_name, contract.passed, contract.severity) == (CONTRACT_CHECK, True, AssetCheckSeverity.ERROR)
    assert (quality.check_name, quality.passed, quality.severity) == (QUALITY_CHECK, False, AssetCheckSeverity.WARN)
    assert contract.asset_key == quality.asset_key == RAW_ASSET_KEYS["mp_logins"]
    assert "expectation: openid not null" in contract.metadata
    assert "expectation: phone matches p" not in contract.metadata
    assert quality.metadata["expectation: phone matches p"].value["unexpected_examples"] == ["139****5678"]
    assert quality.metadata["expectations_failed"].value == 1
    table = quality.metadata["results"].value
    assert "/^(a\\|b)$/" in table and "| FAILED | 4 | 40.000 | `139****5678` |" in table
    assert quality.description.startswith("raw.mp_logins: 0 of 1 warn expectations passed on 10 rows (all rows)")


def _job_defs(settings: Settings) -> Definitions:
    return Definitions(
        assets=[*raw_assets, reads_every_raw_table],
        asset_checks=ingest_checks,
        jobs=[define_asset_job("validation_test_run", selection=AssetSelection.all())],
        resources=build_resources(settings),
        executor=in_process_executor,
    )


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    out = tmp_path_factory.mktemp("validation")
    settings = Settings(
        database=out / "oneid.duckdb",
        landing_dir=REPO_ROOT / "data" / "sample" / "landing",
        config_dir=REPO_ROOT / "config",
        truth_file=out / "none.csv.gz",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATABASE_ENV, str(settings.database))
        job = _job_defs(settings).resolve_job_def("validation_test_run")

        def run():
            return job.execute_in_process(raise_on_error=False)

        yield settings, run


def _evaluations(result) -> dict[tuple[str, str], object]:
    return {(e.asset_key.path[1], e.check_name): e for e in result.get_asset_check_evaluations()}


def _materialized(result) -> set[AssetKey]:
    return {event.asset_key for event in result.get_asset_materialization_events()}


def _doctor(settings: Settings, *statements: str) -> None:
    with duckdb.connect(str(settings.database)) as con:
        for statement in statements:
            con.execute(statement)


def test_checks_pass_on_the_sample_then_warn_then_block(warehouse):
    settings, run = warehouse

    # 1. the bundled sample: every check passes, the downstream asset runs after them
    result = run()
    assert result.success
    evaluations = _evaluations(result)
    assert set(evaluations) == {(s, c) for s in RAW_ASSET_KEYS for c in (CONTRACT_CHECK, QUALITY_CHECK)}
    failed = {key: e.description for key, e in evaluations.items() if not e.passed}
    assert not failed, failed
    orders = evaluations[("orders", CONTRACT_CHECK)]
    assert orders.metadata["rows_validated"].value == orders.metadata["rows_in_table"].value > 1000
    per_rule = orders.metadata["expectation: paid_amount >= refunded_amount"].value
    assert per_rule["success"] is True and per_rule["unexpected_count"] == 0
    assert "| expectation |" in orders.metadata["results"].value
    assert DOWNSTREAM in _materialized(result)

    # 2. soft problems: the quality check fails with WARN, nothing is stopped
    _doctor(
        settings,
        "UPDATE raw.oa_followers SET openid = '13912345678' "
        "WHERE record_id IN (SELECT record_id FROM raw.oa_followers ORDER BY record_id LIMIT 2)",
    )
    result = run()
    assert result.success
    evaluations = _evaluations(result)
    quality = evaluations[("oa_followers", QUALITY_CHECK)]
    assert not quality.passed and quality.severity == AssetCheckSeverity.WARN
    assert "raw.oa_followers.openid" in quality.description and "wechat_id" in quality.description
    assert "139****5678" in quality.description and "13912345678" not in quality.description
    assert quality.metadata["expectation: openid matches wechat_id"].value["unexpected_count"] == 2
    assert evaluations[("oa_followers", CONTRACT_CHECK)].passed
    assert DOWNSTREAM in _materialized(result)

    # 3. a broken contract in raw.orders: contract fails with ERROR and blocks everything downstream
    _doctor(
        settings,
        "UPDATE raw.orders SET refunded_amount = paid_amount + 10 "
        "WHERE record_id IN (SELECT record_id FROM raw.orders WHERE order_status = 'paid' ORDER BY record_id LIMIT 3)",
        "UPDATE raw.orders SET order_status = 'shipped' "
        "WHERE record_id = (SELECT min(record_id) FROM raw.orders WHERE order_status = 'paid')",
    )
    result = run()
    assert not result.success
    evaluations = _evaluations(result)
    contract = evaluations[("orders", CONTRACT_CHECK)]
    assert not contract.passed and contract.severity == AssetCheckSeverity.ERROR and contract.blocking
    assert contract.description.startswith("raw.orders: 9 of 11 error expectations passed")
    assert "raw.orders.paid_amount: paid_amount must be >= refunded_amount" in contract.description
    assert "(expect_column_pair_values_a_to_be_greater_than_b): 3 unexpected of" in contract.description
    assert "raw.orders.order_status: order_status must be one of" in contract.description
    assert "shipped" in contract.description
    assert contract.metadata["expectation: order_status in allowed set"].value["unexpected_examples"] == ["shipped"]
    assert all(e.passed for (s, c), e in evaluations.items() if s != "orders" and c == CONTRACT_CHECK)
    assert DOWNSTREAM not in _materialized(result)
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert "test__reads_every_raw_table" not in started  # "Dependencies ... failed: ['validate_raw_orders']"
    assert {f"validate_raw_{s}" for s in RAW_ASSET_KEYS} <= started
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "validate_raw_orders"
    assert "blocking asset check failed with ERROR severity" in str(failure.event_specific_data.error.message)
    assert "raw/orders: contract" in str(failure.event_specific_data.error.message)
