"""The identity asset against a warehouse: state kept between runs, incremental reruns, the health check."""

from __future__ import annotations

import shutil
import subprocess
import sys

import duckdb
import pytest
from dagster import AssetKey, materialize

from identity import load_config
from identity.privacy import hmac_key
from identity.resolution import user_id_for
from identity.state import load_state, run

from pipelines.defs.identity import identity_checks, identity_graph_health, identity_resolution, phone_keys
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


def _record_map_metadata(result):
    (event,) = [
        event.event_specific_data.materialization
        for event in result.all_events
        if event.event_type_value == "ASSET_MATERIALIZATION"
        and event.event_specific_data.materialization.asset_key == AssetKey(["identity", "record_map"])
    ]
    return event.metadata


def test_first_run_full_then_incremental_then_blocked_by_max_user_size(brand, tmp_path):
    # the CRM export lands after the first run, as the next day's drop would: new records, linking to users
    later = sorted(brand.landing_dir.glob("crm_members/*"))
    assert later
    held = tmp_path / "held"
    for path in later:
        (held / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.move(path, held / path.parent.name / path.name)
    first = _materialize(brand, [*raw_assets, identity_resolution, identity_graph_health])
    assert first.success
    evaluation = _check_result(first)
    assert evaluation.passed and evaluation.asset_key == AssetKey(["identity", "record_map"])
    assert "size_distribution" in evaluation.metadata
    phases = _record_map_metadata(first)["seconds_by_phase"].value
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

    # the next drop: an incremental run with a batch, written as a delta (no staging of every table)
    for path in later:
        shutil.move(held / path.parent.name / path.name, path)
    third = _materialize(brand, [*raw_assets, identity_resolution, identity_graph_health])
    assert third.success and _check_result(third).passed
    metadata = _record_map_metadata(third)
    assert list(metadata["seconds_by_phase"].value) == ["read", "resolve", "write"]
    with duckdb.connect(str(brand.database), read_only=True) as con:
        info = con.sql("select mode, resolved_records, records from identity.runs where run_id = 3").fetchall()[0]
        state = load_state(con)
        saved_keys = con.sql("select * from identity.phone_keys").pl()
        published_runs = con.sql("select count(*) from identity.runs").fetchall()[0][0]
    mode, resolved, records = info
    assert mode == "incremental" and 0 < resolved < records == state.record_map.height > len(users)
    assert metadata["rows"].value == records and published_runs == 3
    # what the delta left equals the state written whole: a full run from it changes no id, and phone_keys
    # holds every usable phone of id_map
    rerun = run(state.input_observations(), load_config(brand.config_dir / "identity.yml"), state, id_key=key)
    assert rerun.run["merges"] == rerun.run["splits"] == rerun.run["new_users"] == 0
    assert rerun.state.record_map.sort("source", "record_id").equals(state.record_map.sort("source", "record_id"))
    assert saved_keys.sort(saved_keys.columns).equals(phone_keys(state.id_map, key))
    users = sorted(state.record_map.rows())

    # above incremental_max_observations the state is loaded without its per-row tables: a full run, same ids
    config_file = brand.config_dir / "identity.yml"
    config_file.write_text(config_file.read_text(encoding="utf-8") + "\nincremental_max_observations: 10\n")
    try:
        lean = _materialize(brand, [identity_resolution, identity_graph_health])
    finally:
        shutil.copy(REPO_ROOT / "config" / "identity.yml", config_file)
    assert lean.success
    assert "above incremental_max_observations (10)" in _record_map_metadata(lean)["mode"].value
    with duckdb.connect(str(brand.database), read_only=True) as con:
        info = con.sql("select mode, merges, splits, new_users from identity.runs where run_id = 4").fetchall()[0]
        kept = sorted(con.sql("select source, record_id, user_id from identity.record_map").fetchall())
        observations = con.sql("select count(*) from identity.observations").fetchall()[0][0]
    assert info == ("full", 0, 0, 0) and kept == users and observations == state.observations.height

    (brand.config_dir / "identity.yml").write_text("max_user_size: 1\n", encoding="utf-8")
    try:
        blocked = _materialize(brand, [identity_resolution, identity_graph_health])
    finally:
        shutil.copy(REPO_ROOT / "config" / "identity.yml", brand.config_dir / "identity.yml")
    evaluation = _check_result(blocked)
    assert not evaluation.passed
    assert "NOT published" in evaluation.description
    with duckdb.connect(str(brand.database), read_only=True) as con:
        runs = con.sql("select max(run_id) from identity.runs").fetchall()[0][0]
        candidate = con.sql("select count(*) from identity_candidate.record_map").fetchall()[0][0]
        kept = con.sql("select source, record_id, user_id from identity.record_map order by all").fetchall()
    assert runs == 4  # the failed run left the published state alone
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
