"""Run it like production: the landing sensor requests a run for new exports, the run publishes the analyst
database, a second look skips, a restart with the saved cursor skips, and a failing blocking check stops the
publish with the previous analyst database left as it was."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context

from pipelines.definitions import FULL_RUN_JOB_NAME, build_defs
from pipelines.defs.publish import ANALYST_DB_KEY
from pipelines.defs.sensors import LANDING_SENSOR_NAME
from pipelines.settings import DATABASE_ENV, REPO_ROOT, Settings

pytestmark = pytest.mark.slow

PUBLISH_STEP = "publish__analyst_db"


def _age(path: Path, seconds: int = 600) -> None:
    """Exports copied in long ago: past the sensor's settle time."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def _copy_into_landing(generated: Path, landing: Path, pattern: str = "**/*") -> list[str]:
    copied = []
    for source in sorted(generated.glob(pattern)):
        if source.is_file():
            target = landing / source.relative_to(generated)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            _age(target)
            copied.append(target.relative_to(landing).as_posix())
    return copied


@pytest.fixture(scope="module")
def brand(tmp_path_factory):
    out = tmp_path_factory.mktemp("orchestration")
    subprocess.run(
        [sys.executable, "-m", "samplegen", "--users", "150", "--seed", "7", "--out", str(out / "generated")],
        check=True, capture_output=True,
    )
    shutil.copytree(REPO_ROOT / "config", out / "config")
    (out / "landing").mkdir()
    (out / "share").mkdir()
    settings = Settings(
        database=out / "warehouse" / "oneid.duckdb", landing_dir=out / "landing", config_dir=out / "config",
        truth_file=out / "generated" / "truth" / "records.csv.gz", analyst_database=out / "share" / "analyst.duckdb",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATABASE_ENV, str(settings.database))  # dbt reads the warehouse from the environment
        yield settings, out / "generated" / "landing", build_defs(settings)


def _tick(defs, settings: Settings, cursor: str | None):
    sensor = defs.resolve_sensor_def(LANDING_SENSOR_NAME)
    context = build_sensor_context(
        instance=DagsterInstance.ephemeral(), cursor=cursor, resources={"paths": defs.resources["paths"]}
    )
    return sensor.evaluate_tick(context)


def _analyst_state(path: Path) -> tuple:
    with duckdb.connect(str(path), read_only=True) as con:
        publish_ids = con.sql("select distinct publish_id from oneid.published_tables").fetchall()
        orders = con.sql("select count(*), sum(net_amount) from marts.fct_orders").fetchall()[0]
        schemas = {r[0] for r in con.sql("select distinct table_schema from information_schema.tables").fetchall()}
    return publish_ids, orders, schemas


def test_sensor_run_publish_skip_restart_and_blocked_publish(brand):
    settings, generated, defs = brand
    empty = _tick(defs, settings, None)
    assert not empty.run_requests and "no new export files" in empty.skip_message

    copied = _copy_into_landing(generated, settings.landing_dir)
    assert len(copied) >= 7
    first = _tick(defs, settings, empty.cursor)
    (request,) = first.run_requests
    assert request.job_name in (None, FULL_RUN_JOB_NAME)

    # run what the sensor asked for
    instance = DagsterInstance.ephemeral()
    run = defs.resolve_job_def(FULL_RUN_JOB_NAME).execute_in_process(
        instance=instance, tags=request.tags, raise_on_error=False
    )
    assert run.success
    materialized = run.asset_materializations_for_node(PUBLISH_STEP)
    assert [m.asset_key for m in materialized] == [ANALYST_DB_KEY]
    metadata = materialized[0].metadata
    publish_ids, (orders, net), schemas = _analyst_state(settings.analyst_path)
    assert publish_ids == [(run.run_id,)]
    assert schemas == {"marts", "seeds", "oneid"}
    with duckdb.connect(str(settings.database), read_only=True) as con:
        assert con.sql("select count(*) from marts.fct_orders").fetchall()[0][0] == orders > 0
        paid_net = con.sql("select sum(net_amount) from marts.fct_orders where is_paid_order").fetchall()[0][0]
    assert metadata["net_gmv"].value == pytest.approx(float(paid_net))
    assert "| channel |" in metadata["funnel_by_channel"].value

    # nothing new: skip, with the reason; and again after a "restart" (a fresh context from the saved cursor)
    again = _tick(defs, settings, first.cursor)
    assert not again.run_requests and f"({len(copied)} seen before)" in again.skip_message
    restarted = _tick(build_defs(settings), settings, again.cursor)
    assert not restarted.run_requests and restarted.skip_message

    # one more export: exactly that file is new
    extra = settings.landing_dir / "orders_taobao" / "ExportOrderList_extra.csv"
    shutil.copyfile(next((settings.landing_dir / "orders_taobao").glob("*.csv")), extra)
    _age(extra)
    (later,) = _tick(defs, settings, restarted.cursor).run_requests
    assert later.tags["oneid/new_files"] == "orders_taobao/ExportOrderList_extra.csv"
    assert later.run_key != request.run_key

    # a failing blocking check (identity health over a tiny max_user_size) stops the publish
    before = settings.analyst_path.read_bytes()
    (settings.config_dir / "identity.yml").write_text("max_user_size: 1\n", encoding="utf-8")
    blocked = defs.resolve_job_def(FULL_RUN_JOB_NAME).execute_in_process(instance=instance, raise_on_error=False)
    assert not blocked.success
    (health,) = [e.event_specific_data for e in blocked.all_events
                 if e.event_type_value == "ASSET_CHECK_EVALUATION"
                 and e.event_specific_data.asset_check_key.name == "identity_graph_health"]
    assert not health.passed and "NOT published" in health.description and "merges" in health.description
    for key in ("largest_user_size", "largest_users", "values_shared", "values_blocked", "blocked_and_shared_values",
                "merges", "splits", "size_distribution"):
        assert key in health.metadata, key
    assert health.metadata["largest_user_size"].value > 1
    assert blocked.asset_materializations_for_node(PUBLISH_STEP) == []
    stopped = [e for e in blocked.all_events if e.step_key == PUBLISH_STEP]
    assert all(e.event_type_value not in ("STEP_START", "ASSET_MATERIALIZATION") for e in stopped)
    failures = " ".join(e.message or "" for e in blocked.all_events if e.event_type_value == "STEP_FAILURE")
    assert "identity_graph_health" in failures
    assert settings.analyst_path.read_bytes() == before
    assert _analyst_state(settings.analyst_path)[0] == [(run.run_id,)]
