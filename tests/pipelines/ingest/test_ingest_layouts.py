"""Each bundled layout loads its export with the right values."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import pytest
from ingest_fixtures import CORP_ID, FILES, MP_APPID, OA_APPID, write_landing

from pipelines.ingest import CANONICAL_SOURCES


@pytest.fixture
def loaded(run):
    write_landing(run.landing)
    reports = run.all()
    return run, reports


def by_id(run, table: str) -> dict[str, dict]:
    return {r["record_id"]: r for r in run.rows(f"SELECT * FROM {table} ORDER BY _row_number")}


def test_every_fixture_file_loads_cleanly(loaded):
    run, reports = loaded
    assert set(reports) == set(CANONICAL_SOURCES)
    results = {f.path.split("/")[0]: f for r in reports.values() for f in r.files}
    for folder, (name, _, expected_rows) in FILES.items():
        res = results[folder]
        assert res.path == f"{folder}/{name}"
        assert (res.status, res.rows_loaded, res.rows_quarantined) == ("loaded", expected_rows, 0), res.message
    assert run.count("raw.quarantine") == 0


def test_load_columns(loaded):
    run, _ = loaded
    rows = run.rows("SELECT * FROM raw.referrals ORDER BY _row_number")
    assert [r["_row_number"] for r in rows] == [1, 2]
    assert {r["_source_file"] for r in rows} == {"referrals/invites_202401.csv"}
    assert {r["_layout"] for r in rows} == {"referral_invites_csv"}
    import hashlib

    assert {r["_file_hash"] for r in rows} == {hashlib.sha256(FILES["referrals"][1]).hexdigest()}
    assert all(isinstance(r["_loaded_at"], datetime) for r in rows)
    cols = [c[0] for c in run.con.execute("DESCRIBE raw.referrals").fetchall()]
    assert cols[0] == "record_id" and cols[-5:] == ["_source_file", "_file_hash", "_row_number", "_layout", "_loaded_at"]


def test_oa_followers(loaded):
    run, _ = loaded
    rows = by_id(run, "raw.oa_followers")
    full = rows[f"{OA_APPID}/oFAKEoa0000000000000000001"]
    assert full["appid"] == OA_APPID
    assert full["unionid"] == "oFAKEun0000000000000000001"
    assert full["subscribe"] == 1
    # 1700000000 = 2023-11-14 22:13:20 UTC = 2023-11-15 06:13:20 in Shanghai
    assert full["subscribed_at"] == datetime(2023, 11, 15, 6, 13, 20)
    assert full["subscribe_scene"] == "ADD_SCENE_QR_CODE"
    assert full["qr_scene"] == 0
    assert full["qr_scene_str"] == "poster_spring"
    assert json.loads(full["tagid_list"]) == [2, 105]

    gone = rows[f"{OA_APPID}/oFAKEoa0000000000000000002"]
    assert gone["subscribe"] == 0
    assert gone["openid"] == "oFAKEoa0000000000000000002"
    for col in ("unionid", "subscribed_at", "subscribe_scene", "qr_scene", "qr_scene_str", "tagid_list", "remark"):
        assert gone[col] is None, col

    unbound = rows[f"{OA_APPID}/oFAKEoa0000000000000000003"]
    assert unbound["unionid"] is None
    assert unbound["remark"] == "测试备注"
    assert unbound["subscribed_at"] == datetime(2024, 1, 1, 8, 0, 0)
    assert json.loads(unbound["tagid_list"]) == []


def test_mp_logins(loaded):
    run, _ = loaded
    rows = by_id(run, "raw.mp_logins")
    assert list(rows) == ["L0001", "L0002", "L0003"]  # the tab before L0002 is gone
    assert rows["L0001"]["phone"] == "+86 139 0000 0001"  # as authorized: identity normalizes phones
    assert rows["L0001"]["logged_in_at"] == datetime(2024, 1, 1, 9, 0, 0)
    assert rows["L0002"]["unionid"] is None and rows["L0002"]["phone"] is None
    # appid empty in the file: filled from sources.yml; padding trimmed, phone otherwise untouched
    assert rows["L0003"]["appid"] == MP_APPID
    assert rows["L0003"]["phone"] == "13900000003"


def test_wecom_contacts_one_row_per_staff(loaded):
    run, _ = loaded
    rows = by_id(run, "raw.wecom_contacts")
    assert list(rows) == [
        "wmFAKE000000000000000000001/staff_01",
        "wmFAKE000000000000000000001/staff_02",
        "wmFAKE000000000000000000002/staff_01",
    ]
    a1 = rows["wmFAKE000000000000000000001/staff_01"]
    assert a1["corp_id"] == CORP_ID
    assert a1["contact_name"] == "测试用户甲"
    assert (a1["contact_type"], a1["gender"], a1["add_way"]) == (1, 1, 1)
    assert a1["unionid"] == "oFAKEun0000000000000000001"
    assert a1["added_at"] == datetime(2023, 11, 15, 6, 13, 20)
    assert a1["state"] == "poster_spring"
    assert a1["remark"] == "老客户"
    assert json.loads(a1["remark_mobiles"]) == ["13900000001"]
    assert json.loads(a1["tags"]) == [{"group_name": "来源", "tag_name": "海报", "type": 1}]
    assert a1["_row_number"] == rows["wmFAKE000000000000000000001/staff_02"]["_row_number"] == 1
    a2 = rows["wmFAKE000000000000000000001/staff_02"]
    assert a2["add_way"] == 16 and a2["state"] == "ad_link_01"
    b = rows["wmFAKE000000000000000000002/staff_01"]
    assert b["unionid"] is None and b["gender"] == 2 and b["_row_number"] == 2
    assert b["state"] is None  # "" means no channel code


def test_miniprogram_orders(loaded):
    run, _ = loaded
    rows = by_id(run, "raw.orders")
    mp = {k.split("/", 1)[1]: v for k, v in rows.items() if k.startswith("miniprogram_shop/")}
    assert list(mp) == ["MP0001", "MP0002", "MP0003", "MP0004", "MP0005", "MP0006", "MP0007"]  # ="..." and tab gone
    o1 = mp["MP0001"]
    assert o1["platform"] == "miniprogram_shop" and o1["appid"] == MP_APPID
    assert o1["buyer_openid"] == "oFAKEmp0000000000000000001"
    assert o1["paid_amount"] == Decimal("19.99") and o1["refunded_amount"] == Decimal("0.00")
    assert o1["created_at"] == datetime(2024, 1, 1, 10, 0, 0) and o1["paid_at"] == datetime(2024, 1, 1, 10, 1, 0)
    assert (o1["order_status"], o1["raw_status"]) == ("paid", "COMPLETED")
    assert mp["MP0002"]["paid_amount"] == Decimal("0.05")
    assert mp["MP0002"]["refunded_amount"] == Decimal("0.00")  # empty refund column defaults to 0
    assert mp["MP0002"]["receiver_phone"] == "138****1234"
    assert mp["MP0003"]["receiver_phone"] == "##Zm9vYmFyCg=="
    assert mp["MP0004"]["receiver_phone"] == "$$c2VjcmV0$$"
    assert (mp["MP0003"]["order_status"], mp["MP0003"]["paid_at"]) == ("unpaid", None)
    assert mp["MP0004"]["order_status"] == "refunded" and mp["MP0004"]["refunded_amount"] == Decimal("88.00")
    assert mp["MP0005"]["order_status"] == "partially_refunded" and mp["MP0005"]["refunded_amount"] == Decimal("25.50")
    assert mp["MP0006"]["order_status"] == "cancelled"
    assert mp["MP0007"]["order_status"] == "paid" and mp["MP0007"]["paid_amount"] == Decimal("1234567.89")
    assert mp["MP0007"]["buyer_account"] is None


def test_taobao_orders_gbk(loaded):
    run, reports = loaded
    [tb_file] = [f for f in reports["orders"].files if f.path.startswith("orders_taobao/")]
    assert tb_file.encoding == "gb18030"
    rows = by_id(run, "raw.orders")
    tb = {k.split("/", 1)[1]: v for k, v in rows.items() if k.startswith("taobao/")}
    o1 = tb["TB0001"]
    assert o1["platform"] == "taobao" and o1["appid"] is None and o1["buyer_openid"] is None
    assert o1["buyer_account"] == "测试买家一"  # GBK Chinese round-trips
    assert o1["receiver_name"] == "张测试"
    assert o1["receiver_phone"] == "138****1234"  # masked phones are kept as exported
    assert o1["buyer_phone"] is None
    assert o1["paid_amount"] == Decimal("19.90")
    assert (o1["raw_status"], o1["order_status"]) == ("交易成功", "paid")
    expected = {
        "TB0002": ("交易关闭", "cancelled"),  # closed, never paid
        "TB0003": ("交易关闭", "refunded"),  # closed after payment, refund = paid
        "TB0004": ("交易关闭", "partially_refunded"),  # closed after payment, 0 < refund < paid
        "TB0005": ("等待买家付款", "unpaid"),
        "TB0006": ("买家已付款，等待卖家发货", "paid"),
        "TB0007": ("卖家已发货，等待买家确认", "paid"),
        "TB0008": ("交易成功", "partially_refunded"),
    }
    assert {k: (tb[k]["raw_status"], tb[k]["order_status"]) for k in expected} == expected
    assert tb["TB0002"]["paid_at"] is None and tb["TB0002"]["refunded_amount"] == Decimal("0.00")
    assert tb["TB0004"]["refunded_amount"] == Decimal("30.00")
    assert tb["TB0005"]["paid_amount"] == Decimal("5.50")


def test_crm_members_bom(loaded):
    run, _ = loaded
    rows = by_id(run, "raw.crm_members")
    assert list(rows) == ["8800000000001", "8800000000002", "8800000000003"]  # no BOM in the first id
    m1 = rows["8800000000001"]
    assert m1["crm_name"] == "demo_crm"
    assert (m1["member_name"], m1["gender"], m1["birthday"]) == ("测试会员甲", "male", date(1990, 1, 2))
    assert (m1["declared_tier"], m1["points"]) == ("金卡会员", 1200)
    assert m1["registered_at"] == datetime(2024, 1, 1, 10, 0, 0)
    assert m1["lifetime_spend"] == Decimal("3000.50")
    assert m1["source_channel"] == "poster_spring"
    m2 = rows["8800000000002"]
    assert (m2["gender"], m2["birthday"], m2["source_channel"]) == ("female", None, None)
    assert m2["phone"] == "139****0002"
    m3 = rows["8800000000003"]
    assert m3["gender"] is None  # 未知
    assert m3["phone"] == "##Y2lwaGVy"
    assert m3["lifetime_spend"] == Decimal("12345.67")


def test_referrals(loaded):
    run, _ = loaded
    rows = by_id(run, "raw.referrals")
    assert list(rows) == ["INV0001", "INV0002"]
    r1 = rows["INV0001"]
    assert r1["appid"] == MP_APPID
    assert (r1["inviter_openid"], r1["invitee_openid"]) == ("oFAKEmp0000000000000000001", "oFAKEmp0000000000000000004")
    assert r1["inviter_unionid"] == "oFAKEun0000000000000000001" and r1["invitee_unionid"] is None
    assert r1["invited_at"] == datetime(2024, 1, 10, 12, 0, 0) and r1["campaign"] == "spring_invite"
    assert rows["INV0002"]["campaign"] is None


def test_column_types_match_contract(loaded):
    run, _ = loaded
    types = {(t, c): ty for t, c, ty in run.con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'raw'"
    ).fetchall()}
    assert types[("orders", "paid_amount")] == "DECIMAL(18,2)"
    assert types[("orders", "created_at")] == "TIMESTAMP"
    assert types[("oa_followers", "subscribe")] == "INTEGER"
    assert types[("oa_followers", "qr_scene")] == "BIGINT"
    assert types[("crm_members", "birthday")] == "DATE"
    assert types[("crm_members", "points")] == "BIGINT"
    assert types[("load_log", "rows_loaded")] == "BIGINT"
    assert types[("quarantine", "row_number")] == "BIGINT"
