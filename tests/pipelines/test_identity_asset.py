"""The identity asset against a warehouse: state kept between runs, incremental reruns, the health check."""

from __future__ import annotations

import shutil
import subprocess
import sys

import duckdb
import pytest
from dagster import AssetKey, materialize

from identity.privacy import hmac_key
from identity.resolution import user_id_for

from pipelines.defs.identity import identity_checks, identity_graph_health, identity_resolution
from pipelines.defs.ingest import raw_assets
from pipelines.defs.resources import build_resources
from pipelines.settings import DATABASE_ENV, REPO_ROOT, Settings

pytestmark = pytest.mark.slow


def _materialize(settings: Settings, selection):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATABASE_ENV, str(settings.database))
        return materialize(selection, resources=build_resources(settings), raise_on_error=False)


def _check_result(result):
    (evaluation,) = [
        event.event_specific_data
        for event in result.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return evaluation


@pytest.fixture(scope="module")
def brand(tmp_path_factory):
    out = tmp_path_factory.mktemp("identity_brand")
    subprocess.run(
        [sys.executable, "-m", "samplegen", "--users", "150", "--seed", "5", "--out", str(out)],
        check=True, capture_output=True,
    )
    config_dir = out / "config"
    shutil.copytree(REPO_ROOT / "config", config_dir)
    return Settings(
        database=out / "oneid.duckdb", landing_dir=out / "landing", config_dir=config_dir,
        truth_file=out / "truth" / "records.csv.gz",
    )


def test_check_is_registered():
    assert identity_graph_health in identity_checks


def test_first_run_full_then_incremental_then_blocked_by_max_user_size(brand):
    first = _materialize(brand, [*raw_assets, identity_resolution, identity_graph_health])
    assert first.success
    evaluation = _check_result(first)
    assert evaluation.passed and evaluation.asset_key == AssetKey(["identity", "record_map"])
    assert "size_distribution" in evaluation.metadata
    (record_map_event,) = [
        event.event_specific_data.materialization
        for event in first.all_events
        if event.event_type_value == "ASSET_MATERIALIZATION"
        and event.event_specific_data.materialization.asset_key == AssetKey(["identity", "record_map"])
    ]
    phases = record_map_event.metadata["seconds_by_phase"].value
    assert list(phases) == ["read", "resolve", "stage", "write"] and all(s >= 0 for s in phases.values())
    with duckdb.connect(str(brand.database), read_only=True) as con:
        runs = con.sql("select run_id, mode from identity.runs order by run_id").fetchall()
        users = con.sql("select source, record_id, user_id from identity.record_map order by all").fetchall()
        links = con.sql("select count(*), count(distinct status) from identity.links").fetchall()[0]
        user_rows = con.sql("select count(*) from identity.users where records > 0").fetchall()[0][0]
        anchors = con.sql("select anchor, user_id from identity.users").fetchall()
    assert runs == [(1, "full")]
    # ids are keyed like the phone hashes: nobody holding a phone can recompute its user's id without the key
    key, _ = hmac_key()
    assert all(user_id == user_id_for(anchor, key) != user_id_for(anchor) for anchor, user_id in anchors)
    assert links[0] > len(users) and links[1] >= 2
    assert user_rows == len({row[2] for row in users})

    second = _materialize(brand, [identity_resolution, identity_graph_health])
    assert second.success
    with duckdb.connect(str(brand.database), read_only=True) as con:
        runs = con.sql("select run_id, mode, resolved_records, new_users from identity.runs order by run_id").fetchall()
        again = con.sql("select source, record_id, user_id from identity.record_map order by all").fetchall()
    assert runs[-1] == (2, "incremental", 0, 0)
    assert again == users

    (brand.config_dir / "identity.yml").write_text("max_user_size: 1\n", encoding="utf-8")
    try:
        third = _materialize(brand, [identity_resolution, identity_graph_health])
    finally:
        shutil.copy(REPO_ROOT / "config" / "identity.yml", brand.config_dir / "identity.yml")
    evaluation = _check_result(third)
    assert not evaluation.passed
    assert "NOT published" in evaluation.description
    with duckdb.connect(str(brand.database), read_only=True) as con:
        runs = con.sql("select max(run_id) from identity.runs").fetchall()[0][0]
        candidate = con.sql("select count(*) from identity_candidate.record_map").fetchall()[0][0]
        kept = con.sql("select source, record_id, user_id from identity.record_map order by all").fetchall()
    assert runs == 2  # the failed run left the published state alone
    assert candidate == len(users) and kept == users


def test_phone_keys_mask_and_hmac_each_usable_phone():
    import polars as pl

    from identity.privacy import identity_hmac, mask_phone
    from pipelines.defs.identity import phone_keys

    key = b"k" * 32
    id_map = pl.DataFrame(
        {
            "id_type": ["phone", "openid", "phone", "phone"],
            "scope": ["", "wxapp", "", ""],
            "id_value": ["13912345678", "oAbc", "18600001111", "13700002222"],
            "user_id": ["u_b", "u_a", "u_a", "u_b"],
        }
    )
    keys = phone_keys(id_map, key)
    assert keys.rows() == [
        (user, mask_phone(phone), identity_hmac(key, "phone", "", phone))
        for user, phone in [("u_a", "18600001111"), ("u_b", "13700002222"), ("u_b", "13912345678")]
    ]
