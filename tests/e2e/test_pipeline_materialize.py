"""The whole graph, materialized on a freshly generated small brand into a temporary warehouse."""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import materialize

import identity
from pipelines.defs.dbt import oneid_dbt_models
from pipelines.defs.identity import identity_resolution
from pipelines.defs.ingest import raw_assets
from pipelines.defs.resources import build_resources
from pipelines.settings import DATABASE_ENV, REPO_ROOT, Settings

pytestmark = pytest.mark.slow

RAW_TABLES = ["oa_followers", "mp_logins", "wecom_contacts", "orders", "crm_members", "referrals"]


def _data_rows(path: Path) -> int:
    """Rows an export should yield, counted independently of the ingest code.

    A WeCom contact yields one row per staff member who added it (the raw table's grain).
    """
    raw = path.read_bytes()
    if path.suffix == ".jsonl":
        lines = [line for line in raw.splitlines() if line.strip()]
        if path.parent.name == "wecom_contacts":
            return sum(max(1, len(json.loads(line).get("follow_user") or [])) for line in lines)
        return len(lines)
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    return sum(1 for row in csv.reader(io.StringIO(text)) if row) - 1


def _run(settings: Settings, assets) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATABASE_ENV, str(settings.database))
        result = materialize(assets, resources=build_resources(settings), raise_on_error=True)
    assert result.success


@pytest.fixture(scope="module")
def brand(tmp_path_factory) -> Settings:
    out = tmp_path_factory.mktemp("brand")
    subprocess.run(
        [sys.executable, "-m", "samplegen", "--users", "400", "--seed", "11", "--out", str(out)],
        check=True, capture_output=True,
    )
    settings = Settings(
        database=out / "oneid.duckdb",
        landing_dir=out / "landing",
        config_dir=REPO_ROOT / "config",
        truth_file=out / "truth" / "records.csv.gz",
    )
    _run(settings, [*raw_assets, identity_resolution, oneid_dbt_models])
    return settings


@pytest.fixture
def con(brand):
    with duckdb.connect(str(brand.database), read_only=True) as connection:
        yield connection


def test_every_file_loaded_and_every_row_accounted_for(brand, con):
    files = sorted(p for p in brand.landing_dir.rglob("*") if p.is_file())
    assert len(files) >= 7
    log = {
        row[0]: row[1:]
        for row in con.sql("select source_file, status, rows_loaded, rows_quarantined from raw.load_log").fetchall()
    }
    for path in files:
        relative = path.relative_to(brand.landing_dir).as_posix()
        status, loaded, quarantined = log[relative]
        assert status == "loaded", relative
        assert loaded + quarantined == _data_rows(path), relative
    raw_total = sum(con.sql(f"select count(*) from raw.{t}").fetchall()[0][0] for t in RAW_TABLES)
    assert raw_total == sum(v[1] for v in log.values())
    assert raw_total > 1000


def test_every_record_has_exactly_one_user(con):
    expected = " union all ".join(
        [f"select '{t}' as source, record_id from raw.{t}" for t in RAW_TABLES if t != "referrals"]
        + [f"select 'referrals', record_id || '/{side}' from raw.referrals" for side in ("inviter", "invitee")]
    )
    missing = con.sql(
        f"select count(*) from ({expected}) e anti join identity.record_map m using (source, record_id)"
    ).fetchall()[0][0]
    assert missing == 0
    duplicates = con.sql(
        "select count(*) from (select source, record_id from identity.record_map group by all having count(*) > 1)"
    ).fetchall()[0][0]
    assert duplicates == 0


def test_orders_mart_has_one_row_per_order_and_every_paid_order_a_user(con):
    raw_orders = con.sql("select count(distinct record_id) from raw.orders").fetchall()[0][0]
    fct = con.sql(
        "select count(*), count(*) filter (where paid_at is not null and user_id is null), "
        "count(*) filter (where net_amount < 0), sum(net_amount) from marts.fct_orders"
    ).fetchall()[0]
    assert fct[0] == raw_orders
    assert fct[1] == 0
    assert fct[2] == 0
    users_gmv = con.sql("select sum(lifetime_net_gmv) from marts.dim_users").fetchall()[0][0]
    assert users_gmv == fct[3]


def test_dim_users_holds_every_unified_user(con):
    users = con.sql("select count(distinct user_id) from identity.record_map").fetchall()[0][0]
    assert con.sql("select count(*), count(distinct user_id) from marts.dim_users").fetchall()[0] == (users, users)


def test_identity_accuracy_on_the_generated_brand(brand, con):
    truth = pl.read_csv(brand.truth_file, infer_schema=False)
    predicted = con.sql("select source, record_id, user_id from identity.record_map").pl()
    scores = identity.pairwise_scores(predicted, truth)
    assert scores["records"] > 0.9 * predicted.height
    assert scores["precision"] >= 0.97
    assert scores["recall"] >= 0.93


def test_rerun_loads_nothing_twice(brand, con):
    before = {t: con.sql(f"select count(*) from raw.{t}").fetchall()[0][0] for t in RAW_TABLES}
    users_before = con.sql("select user_id from identity.record_map order by source, record_id").fetchall()
    con.close()
    _run(brand, [*raw_assets, identity_resolution])
    with duckdb.connect(str(brand.database), read_only=True) as again:
        after = {t: again.sql(f"select count(*) from raw.{t}").fetchall()[0][0] for t in RAW_TABLES}
        duplicates = again.sql("select count(*) from raw.load_log where status = 'duplicate'").fetchall()[0][0]
        users_after = again.sql("select user_id from identity.record_map order by source, record_id").fetchall()
    assert after == before
    assert duplicates >= 7
    assert users_after == users_before
