"""The identity asset against a warehouse: state kept between runs, incremental reruns, the health check."""

from __future__ import annotations

import dataclasses
import re
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

from pipelines.defs.identity import (
    identity_checks,
    identity_graph_health,
    identity_resolution,
    phone_keys,
    plan_run,
)
from pipelines.defs.ingest import raw_assets
from pipelines.defs.resources import build_resources
from pipelines.observations import read_observations
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


def _record_users(database) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.sql("select source, record_id, user_id from identity.record_map order by all").fetchall()


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
    # found from the raw files: none is new, so no observation was read
    assert _record_map_metadata(second)["mode"].value == "incremental (no new files)"

    # the next drop: the CRM export links most users of this small brand, so with the shipped
    # incremental_max_share the run is full (tried on a copy of the warehouse)...
    for path in later:
        shutil.move(held / path.parent.name / path.name, path)
    copy = dataclasses.replace(brand, database=tmp_path / "copy.duckdb")
    shutil.copy(brand.database, copy.database)
    by_share = _materialize(copy, [*raw_assets, identity_resolution, identity_graph_health])
    assert by_share.success
    mode = _record_map_metadata(by_share)["mode"].value
    assert mode.startswith("full (") and "more than incremental_max_share of the records" in mode
    # ...and without the limit it is an incremental run with a batch, written as a delta (no staging of every
    # table), with the same result
    config_file = brand.config_dir / "identity.yml"
    config_file.write_text(config_file.read_text(encoding="utf-8") + "\nincremental_max_share: null\n")
    try:
        third = _materialize(brand, [*raw_assets, identity_resolution, identity_graph_health])
    finally:
        shutil.copy(REPO_ROOT / "config" / "identity.yml", config_file)
    assert third.success and _check_result(third).passed
    metadata = _record_map_metadata(third)
    assert _record_users(copy.database) == _record_users(brand.database)
    assert list(metadata["seconds_by_phase"].value) == ["read", "resolve", "write"]
    with duckdb.connect(str(brand.database), read_only=True) as con:
        info = con.sql("select mode, resolved_records, records from identity.runs where run_id = 3").fetchall()[0]
        state = load_state(con)
        saved_keys = con.sql("select * from identity.phone_keys").pl()
        published_runs = con.sql("select count(*) from identity.runs").fetchall()[0][0]
    mode, resolved, records = info
    assert mode == "incremental" and 0 < resolved < records == state.record_map.height > len(users)
    assert metadata["rows"].value == records and published_runs == 3
    # the batch came from the new files' records alone, and the state now holds every raw observation: comparing
    # all of them finds nothing new and nothing gone
    assert re.fullmatch(r"incremental \(\d+ new observations in \d+ new files \([\d,]+ records\)\)",
                        metadata["mode"].value)
    with duckdb.connect(str(brand.database)) as con:
        observations = read_observations(con, brand.config_dir)
        assert plan_run(con, observations, load_config(brand.config_dir / "identity.yml"))[::2] == (
            True, "0 new observations"
        )
    # what the delta left equals the state written whole: a full run from it changes no id, and phone_keys
    # holds every usable phone of id_map
    rerun = run(state.input_observations(), load_config(brand.config_dir / "identity.yml"), state, id_key=key)
    assert rerun.run["merges"] == rerun.run["splits"] == rerun.run["new_users"] == 0
    assert rerun.state.record_map.sort("source", "record_id").equals(state.record_map.sort("source", "record_id"))
    assert saved_keys.sort(saved_keys.columns).equals(phone_keys(state.id_map, key))
    users = sorted(state.record_map.rows())

    # an incremental run over max_user_size (same rules: max_user_size only decides publishing) is not published;
    # its candidate is the published state with its changes applied, every record, not only the touched ones
    config_file = brand.config_dir / "identity.yml"
    config_file.write_text(config_file.read_text(encoding="utf-8") + "\nmax_user_size: 1\n")
    try:
        refused = _materialize(brand, [identity_resolution, identity_graph_health])
    finally:
        shutil.copy(REPO_ROOT / "config" / "identity.yml", config_file)
    assert not _check_result(refused).passed
    assert _record_map_metadata(refused)["mode"].value == "incremental (no new files)"
    with duckdb.connect(str(brand.database), read_only=True) as con:
        candidate_runs = con.sql("select run_id, mode from identity_candidate.runs order by run_id").fetchall()
        candidate = sorted(con.sql("select source, record_id, user_id from identity_candidate.record_map").fetchall())
        candidate_keys = con.sql("select count(*) from identity_candidate.phone_keys").fetchall()[0][0]
        published_runs = con.sql("select max(run_id) from identity.runs").fetchall()[0][0]
        kept = sorted(con.sql("select source, record_id, user_id from identity.record_map").fetchall())
    assert candidate_runs[-1] == (4, "incremental") and published_runs == 3
    assert candidate == kept == users and candidate_keys == saved_keys.height

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
    assert runs == 3  # the failed runs left the published state alone
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


def test_plan_run_compares_the_raw_observations_with_the_state_in_the_warehouse(tmp_path):
    """The diff runs in DuckDB against identity.observations: a row equal to a stored one (nulls included) is
    not new, a stored row missing from the raw tables makes the run full, other rules make it full."""
    import polars as pl

    from identity import IdentityConfig
    from identity.state import save_state
    from pipelines.defs.identity import plan_run

    schema = {c: pl.String for c in ["source", "record_id", "id_type", "scope", "id_value", "observed_at", "strength"]}

    def observations(rows):
        return pl.DataFrame(rows, schema=schema, orient="row").with_columns(
            pl.col("observed_at").str.to_datetime(time_unit="us")
        )

    stored = [
        ("crm", "c1", "phone", "", "13912345678", "2024-01-01 00:00:00", None),
        ("crm", "c1", "email", "", " A@x.cn ", None, "weak"),
        ("shop", "s1", "unionid", "", "oU1", "2024-01-02 00:00:00", "strong"),
    ]
    new = [("shop", "s2", "unionid", "", "oU1", None, None), ("crm", "c1", "email", "", "b@x.cn", None, "weak")]
    config = IdentityConfig()
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        assert plan_run(con, observations(stored), config)[::2] == (False, "no state yet")
        save_state(con, run(observations(stored), config).state)
        incremental, batch, why = plan_run(con, observations(stored + new), config)
        assert incremental and why == "2 new observations"
        # in input form, with the strength the rules give a row without one
        filled = [new[0][:-1] + ("strong",), new[1]]
        assert sorted(batch.rows()) == sorted(observations(filled).rows())
        assert plan_run(con, observations(stored), config)[::2] == (True, "0 new observations")
        changed = [stored[0], stored[1], ("shop", "s1", "unionid", "", "oU1", "2023-12-31 00:00:00", "strong")]
        assert plan_run(con, observations(changed + new), config)[::2] == (
            False, "1 observations of the last run are gone or changed"
        )
        assert plan_run(con, observations(stored), IdentityConfig(shared_threshold=5))[::2] == (
            False, "identity rules changed"
        )
