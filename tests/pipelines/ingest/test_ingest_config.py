"""config/*.yml against the contract, config validation, and the docs' add-a-layout example."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipelines.ingest import CANONICAL_SOURCES, ingest_source, load_config, raw_table
from pipelines.ingest.catalog import CANONICAL_COLUMNS, ddl, table_columns
from pipelines.ingest.config import ConfigError, parse_layouts, parse_sources

REPO = Path(__file__).resolve().parents[3]
CONFIG_DIR = REPO / "config"


def test_repo_config_covers_every_raw_table(config):
    assert config.sources == CANONICAL_SOURCES
    assert {f.name: f.source for f in config.folders.values()} == {
        "oa_followers": "oa_followers", "mp_logins": "mp_logins", "wecom_contacts": "wecom_contacts",
        "orders_miniprogram": "orders", "orders_taobao": "orders", "orders_youzan": "orders",
        "orders_douyin": "orders", "orders_generic": "orders", "crm_members": "crm_members",
        "referrals": "referrals",
    }
    assert [f.name for f in config.folders_for("orders")] == [
        "orders_miniprogram", "orders_taobao", "orders_youzan", "orders_douyin", "orders_generic",
    ]
    assert set(config.layouts) == {
        "oa_user_info_jsonl", "oa_user_info_batchget_json", "oa_user_info_batchget_jsonl", "oa_user_get_json",
        "oa_user_get_jsonl", "mp_login_csv", "mp_login_jsonl", "wecom_externalcontact_jsonl",
        "wecom_externalcontact_json", "wecom_batch_get_by_user_jsonl", "wecom_batch_get_by_user_json",
        "miniprogram_shop_orders_csv", "taobao_orders_csv", "youzan_orders", "douyin_orders", "generic_orders_csv",
        "crm_members_csv", "crm_members_en", "referral_invites_csv",
    }


def test_repo_scope_is_the_sample_brand(config):
    scope = {name: dict(f.scope) for name, f in config.folders.items()}
    assert scope["oa_followers"] == {"appid": "wxoa0000000demo01"}
    assert scope["mp_logins"] == scope["referrals"] == {"appid": "wxmp0000000demo01"}
    assert scope["orders_miniprogram"] == {"platform": "miniprogram_shop", "appid": "wxmp0000000demo01"}
    assert scope["orders_taobao"] == {"platform": "taobao"}
    # Every order folder names its platform: identity scopes buyer_account by raw.orders.platform.
    assert scope["orders_youzan"] == {"platform": "youzan"}
    assert scope["orders_douyin"] == {"platform": "douyin"}
    assert scope["orders_generic"] == {"platform": "generic"}
    assert all("platform" in dict(f.scope) for f in config.folders_for("orders"))
    assert scope["wecom_contacts"] == {"corp_id": "wwcorp00000demo01"}
    assert scope["crm_members"] == {"crm_name": "demo_crm"}


def test_contract_record_ids(config):
    expected = {
        "oa_followers": "{appid}/{openid}",
        "mp_logins": "{log_id}",
        "wecom_contacts": "{external_userid}/{staff_userid}",
        "orders": "{platform}/{order_id}",
        "crm_members": "{member_id}",
        "referrals": "{invite_id}",
    }
    assert {n: lay.record_id for n, lay in config.layouts.items()} == {
        n: expected[lay.source] for n, lay in config.layouts.items()
    }


def test_ddl_is_the_contract(con):
    for statement in ddl():
        con.execute(statement)
    for source in CANONICAL_SOURCES:
        cols = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema='raw' AND table_name=? ORDER BY ordinal_position",
            [source],
        ).fetchall()
        assert [c[0] for c in cols] == [c for c, _ in table_columns(source)]
        assert raw_table(source) == f"raw.{source}"
    q = [c[0] for c in con.execute("DESCRIBE raw.quarantine").fetchall()]
    assert q == ["source", "source_file", "file_hash", "row_number", "column_name", "raw_value", "reason", "loaded_at"]
    log = [c[0] for c in con.execute("DESCRIBE raw.load_log").fetchall()]
    assert log == ["source", "source_file", "file_hash", "layout", "status", "rows_loaded", "rows_quarantined", "message",
                   "loaded_at", "rows_forgotten"]


def test_catalog_imports_without_polars_or_duckdb():
    code = (
        "import sys; from pipelines.ingest import CANONICAL_SOURCES, raw_table; "
        "assert 'polars' not in sys.modules and 'duckdb' not in sys.modules, sorted(sys.modules); "
        "print(len(CANONICAL_SOURCES))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "6"


# --- validation -------------------------------------------------------------------------------------

BASE_LAYOUT = {
    "source": "orders", "format": "csv", "amount_unit": "yuan", "record_id": "{platform}/{order_id}",
    "fields": {"order_id": {"from": "id", "required": True}, "paid_amount": "amount"},
}


def layouts_with(**changes) -> dict:
    spec = {**BASE_LAYOUT, **changes}
    return {"layouts": {"x": spec}}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (layouts_with(source="youzan_orders"), "is not a raw table"),
        (layouts_with(format="parquet"), "format"),
        (layouts_with(fields={"order_id": "id", "order_no": "x"}), "raw.orders has no column 'order_no'"),
        (layouts_with(fields={"order_id": "id", "paid_amount": "a"}, amount_unit=None), "amount needs `unit"),
        (layouts_with(fields={"order_id": "id", "order_status": {"rules": [{"when": {"order_id": "1"}, "then": "shipped"}]}}),
         "not canonical"),
        (layouts_with(fields={"order_id": "id", "order_status": {"rules": [{"when": {"raw_status": "1"}, "then": "paid"}]}}),
         "refers to 'raw_status'"),
        (layouts_with(record_id="{order_no}"), "{order_no} is not a column"),
        (layouts_with(fields={"order_id": {"from": "id", "requried": True}}), "unknown key"),
        (layouts_with(fields={"order_id": "id", "created_at": {"from": "t", "format": "YYYY-MM-DD"}}), "strftime"),
        (layouts_with(timezone="Mars/Olympus"), "unknown time zone"),
        (layouts_with(format="jsonl", fields={"order_id": "a[].b[].c"}), "only one list can be exploded"),
        (layouts_with(format="jsonl", fields={"order_id": "a[].b", "buyer_phone": "a.c"}), "exploded (`[]`) in one path and not"),
        (layouts_with(fields={"order_id": "id", "order_no": "x"}), "name a helper field `_order_no`"),
        (layouts_with(fields={"order_id": "id", "buyer_phone": {"from": "p", "value": "1"}}), "`value` (a constant) excludes"),
        (layouts_with(require_any=[["order_id"]]), "a list of two or more fields"),
        (layouts_with(require_any=[["order_id", "buyer_openid"]]), "a list of two or more fields of this layout"),
        (layouts_with(empty_list="drop"), "empty_list: one of skip, quarantine"),
        (layouts_with(fields={"order_id": "id", "paid_amount": "a", "refunded_amount": {"rules": [{"then": {"field": "order_id"}}]}}),
         "has another type"),
        (layouts_with(fields={"order_id": "id", "paid_amount": "a", "raw_status": "s",
                              "order_status": {"rules": [{"when": {"refund": "full"}, "then": "refunded"}]},
                              "refunded_amount": {"rules": [{"then": "0"}]}}), "derived later"),
        (layouts_with(fields={"order_id": "id", "order_status": {"rules": [{"then": {"field": "raw_status"}}]}, "raw_status": "s"}),
         "not canonical"),
    ],
)
def test_layout_errors_name_the_key(doc, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_layouts(doc, where="layouts.yml")


def test_folder_errors(config):
    layouts = config.layouts
    with pytest.raises(ConfigError, match="must feed one raw table"):
        parse_sources({"folders": {"f": {"layouts": ["taobao_orders_csv", "crm_members_csv"]}}}, layouts)
    with pytest.raises(ConfigError, match="unknown layout"):
        parse_sources({"folders": {"f": {"layouts": ["youzan"]}}}, layouts)
    with pytest.raises(ConfigError, match="neither the layout's fields nor this folder's scope"):
        parse_sources({"folders": {"f": {"layouts": ["taobao_orders_csv"]}}}, layouts)  # no platform
    with pytest.raises(ConfigError, match="raw.orders has no column 'shop'"):
        parse_sources({"folders": {"f": {"layouts": ["taobao_orders_csv"], "scope": {"platform": "t", "shop": "x"}}}}, layouts)


def test_load_config_reports_the_file(tmp_path):
    (tmp_path / "layouts.yml").write_text("layouts: [", encoding="utf-8")
    (tmp_path / "sources.yml").write_text("folders: {}", encoding="utf-8")
    with pytest.raises(ConfigError, match="layouts.yml: invalid YAML"):
        load_config(tmp_path)


# --- the worked example of docs/ingest.md -----------------------------------------------------------


def doc_example(name: str) -> str:
    text = (REPO / "docs" / "ingest.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- example: {re.escape(name)} -->\s*```yaml\n(.*?)```", text, re.S)
    assert m, f"docs/ingest.md lost its {name} example"
    return m.group(1)


def test_docs_pos_example_is_config_only(tmp_path, con):
    cfg_dir = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, cfg_dir)
    for name in ("layouts.yml", "sources.yml"):
        with open(cfg_dir / name, "a", encoding="utf-8") as fh:
            fh.write("\n" + doc_example(name))
    config = load_config(cfg_dir)
    assert [f.name for f in config.folders_for("orders")][-1] == "orders_pos"

    landing = tmp_path / "landing"
    (landing / "orders_pos").mkdir(parents=True)
    pl.DataFrame({
        "小票号": ["P0001", "P0002", "P0003", "P0004", "P0005"],
        "状态": ["已支付", "已取消", "已退款", "未支付", "挂单"],
        "下单时间": ["2024-01-01 10:00:00", "2024/01/01 10:05", "2024-01-01 10:00:00", "2024-01-01 10:00:00",
                 "2024-01-01 10:00:00"],
        "支付时间": ["2024-01-01 10:00:09", "", "2024-01-01 10:00:09", "", ""],
        "实收金额": ["59.00", "0", "20.50", "9.90", "1"],
        "退款金额": ["", "", "20.50", "", ""],
        "会员手机号": ["13900000001", "", "+86 139 0000 0002", "", ""],
        "收银员": ["测试店员"] * 5,  # extra columns are ignored
    }).write_excel(landing / "orders_pos" / "pos_orders_202401.xlsx")

    report = ingest_source(con, "orders", landing, config)
    [res] = report.files
    assert (res.status, res.layout, res.rows_loaded, res.rows_quarantined) == ("loaded", "store_pos_orders", 4, 1)
    rows = con.execute(
        "SELECT record_id, platform, order_status, raw_status, paid_amount, refunded_amount, buyer_phone, created_at "
        "FROM raw.orders ORDER BY _row_number"
    ).fetchall()
    from datetime import datetime

    t = datetime(2024, 1, 1, 10, 0)
    assert rows == [
        ("store_pos/P0001", "store_pos", "paid", "已支付", Decimal("59.00"), Decimal("0.00"), "13900000001", t),
        ("store_pos/P0002", "store_pos", "cancelled", "已取消", Decimal("0.00"), Decimal("0.00"), None, datetime(2024, 1, 1, 10, 5)),
        ("store_pos/P0003", "store_pos", "refunded", "已退款", Decimal("20.50"), Decimal("20.50"), "+86 139 0000 0002", t),
        ("store_pos/P0004", "store_pos", "unpaid", "未支付", Decimal("9.90"), Decimal("0.00"), None, t),
    ]
    [q] = con.execute("SELECT row_number, column_name, raw_value, reason FROM raw.quarantine").fetchall()
    assert q[:3] == (5, "状态", "挂单") and q[3].startswith("unknown value (expected one of 未支付, 已支付")


def test_cli(tmp_path):
    from ingest_fixtures import write_landing

    landing = write_landing(tmp_path / "landing")
    db = tmp_path / "x.duckdb"
    cmd = [sys.executable, "-m", "pipelines.ingest", "--landing", str(landing), "--db", str(db), "--config", str(CONFIG_DIR)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "raw.orders: 2 loaded, 0 duplicate, 0 rejected file(s); 15 rows loaded, 0 quarantined" in out.stdout
    again = subprocess.run(cmd + ["--source", "orders"], cwd=REPO, capture_output=True, text=True)
    assert "raw.orders: 0 loaded, 2 duplicate" in again.stdout and again.returncode == 0


def test_layout_yaml_is_documented():
    # Every layout carries a description: layouts.yml doubles as the catalogue of supported exports.
    doc = yaml.safe_load((CONFIG_DIR / "layouts.yml").read_text(encoding="utf-8"))
    assert all(spec.get("description") for spec in doc["layouts"].values())
    assert set(CANONICAL_COLUMNS) == set(CANONICAL_SOURCES)


def test_dialect_time_formats_time_zones_and_null_values_are_config(tmp_path, con):
    from datetime import datetime

    from pipelines.ingest.config import IngestConfig

    layouts = parse_layouts(yaml.safe_load("""
layouts:
  invites_tsv_utc:
    description: a referral tool that exports tab-separated UTC times
    source: referrals
    format: csv
    separator: "\\t"
    null_values: ["-", "null"]
    timezone: UTC
    time_format: ["%Y/%m/%d %H:%M", "%Y-%m-%dT%H:%M:%S%z", unix_millis]
    record_id: "{invite_id}"
    fields:
      invite_id: {from: id, required: true}
      inviter_openid: {from: from_openid, required: true}
      invitee_openid: {from: to_openid, required: true}
      invited_at: {from: at, required: true}
      campaign: campaign
"""))
    folders, _ = parse_sources({"folders": {"invites": {"layouts": ["invites_tsv_utc"], "scope": {"appid": "wxmpFAKE"}}}}, layouts)
    config = IngestConfig(layouts=layouts, folders=folders)
    landing = tmp_path / "landing"
    (landing / "invites").mkdir(parents=True)
    (landing / "invites" / "i.tsv").write_text(
        "id\tfrom_openid\tto_openid\tat\tcampaign\n"
        "1\toA\toB\t2024/01/01 16:30\t-\n"
        "2\toA\toC\t2024-01-01T16:30:00+08:00\tnull\n"
        "3\toA\toD\t1704126600000\tspring\n"
        "4\toA\toE\t-\tspring\n",
        encoding="utf-8",
    )
    [res] = ingest_source(con, "referrals", landing, config).files
    assert (res.rows_loaded, res.rows_quarantined) == (3, 1)
    rows = con.execute("SELECT invite_id, appid, invited_at, campaign FROM raw.referrals ORDER BY 1").fetchall()
    assert rows == [
        ("1", "wxmpFAKE", datetime(2024, 1, 2, 0, 30), None),  # UTC wall time -> China time
        ("2", "wxmpFAKE", datetime(2024, 1, 1, 16, 30), None),  # explicit +08:00 offset wins over `timezone`
        ("3", "wxmpFAKE", datetime(2024, 1, 2, 0, 30), "spring"),  # epoch millis
    ]
    assert con.execute("SELECT row_number, column_name, reason FROM raw.quarantine").fetchall() == [
        (4, "at", "missing required value"),  # "-" is a null value here
    ]
