"""The export shapes beyond the sample brand's: each a tiny hand-made fake file, loaded and checked value by value.

All people, ids and phones are fake. Files are built here so that their bytes are explicit (BOMs, tabs,
GBK). See ingest_fixtures.py for the sample-brand shapes.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import polars as pl
import pytest
from ingest_fixtures import CORP_ID, MP_APPID, OA_APPID, put

D = Decimal


def jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records)


def rows_by_id(run, table: str) -> dict[str, dict]:
    return {r["record_id"]: r for r in run.rows(f"SELECT * FROM {table} ORDER BY _source_file, _row_number")}


def quarantine(run) -> list[tuple]:
    return [tuple(r.values()) for r in run.rows(
        "SELECT source_file, row_number, column_name, reason FROM raw.quarantine ORDER BY source_file, row_number, column_name"
    )]


# --- Official Account -------------------------------------------------------------------------------

USER_GET_1 = {"total": 3, "count": 2, "data": {"openid": ["oFAKEget00000000000000001", "oFAKEget00000000000000002"]},
              "next_openid": "oFAKEget00000000000000002"}
USER_GET_2 = {"total": 3, "count": 1, "data": {"openid": ["oFAKEget00000000000000003"]},
              "next_openid": "oFAKEget00000000000000003"}
USER_GET_LAST = {"total": 3, "count": 0, "next_openid": ""}  # the last page: no `data` at all


def test_oa_user_get_pages_as_json_and_jsonl(run):
    put(run.landing, "oa_followers", "user_get/page_0001.json", json.dumps(USER_GET_1))
    put(run.landing, "oa_followers", "user_get/page_0004.json", json.dumps(USER_GET_LAST))
    put(run.landing, "oa_followers", "user_get/pages.jsonl",
        jsonl(USER_GET_2, USER_GET_LAST, {"errcode": 45009, "errmsg": "reach max api daily quota limit"}))
    res = {f.path.split("/")[-1]: f for f in run.source("oa_followers").files}
    assert {n: (r.status, r.layout, r.rows_loaded, r.rows_quarantined) for n, r in res.items()} == {
        "page_0001.json": ("loaded", "oa_user_get_json", 2, 0),
        "page_0004.json": ("loaded", "oa_user_get_json", 0, 0),  # an empty last page is not an error
        "pages.jsonl": ("loaded", "oa_user_get_jsonl", 1, 1),
    }
    rows = rows_by_id(run, "raw.oa_followers")
    assert list(rows) == [
        f"{OA_APPID}/oFAKEget00000000000000001", f"{OA_APPID}/oFAKEget00000000000000002",
        f"{OA_APPID}/oFAKEget00000000000000003",
    ]
    r = rows[f"{OA_APPID}/oFAKEget00000000000000003"]
    # openid-only follower rows: the list is of current followers, nothing else is known
    assert (r["appid"], r["openid"], r["subscribe"], r["_row_number"]) == (OA_APPID, "oFAKEget00000000000000003", 1, 1)
    assert all(r[c] is None for c in ("unionid", "subscribed_at", "subscribe_scene", "qr_scene_str", "tagid_list"))
    # an error response in the middle of the pages is not silently skipped
    assert quarantine(run) == [
        ("oa_followers/user_get/pages.jsonl", 3, "errcode", "WeChat error response (errcode is not 0)"),
    ]


def test_oa_batchget_pages_as_jsonl(run):
    page1 = {"user_info_list": [
        {"subscribe": 1, "openid": "oFAKEbg1", "unionid": "oFAKEun1", "language": "zh_CN", "subscribe_time": 1704067200,
         "remark": "", "tagid_list": [101], "subscribe_scene": "ADD_SCENE_CHANNELS", "qr_scene": 98765,
         "qr_scene_str": ""},
        {"subscribe": 0, "openid": "oFAKEbg2"},
    ]}
    page2 = {"user_info_list": [
        {"subscribe": 1, "openid": "oFAKEbg3", "subscribe_time": 1704153600, "tagid_list": [],
         "subscribe_scene": "ADD_SCENE_QR_CODE", "qr_scene": 0, "qr_scene_str": "parcel_card_03"},
    ]}
    put(run.landing, "oa_followers", "batchget.jsonl", jsonl(page1, page2))
    [res] = run.source("oa_followers").files
    assert (res.status, res.layout, res.rows_loaded, res.rows_quarantined) == ("loaded", "oa_user_info_batchget_jsonl", 3, 0)
    rows = rows_by_id(run, "raw.oa_followers")
    a = rows[f"{OA_APPID}/oFAKEbg1"]
    assert (a["unionid"], a["subscribe"], a["subscribed_at"]) == ("oFAKEun1", 1, datetime(2024, 1, 1, 8, 0))
    assert (a["subscribe_scene"], a["qr_scene"], a["qr_scene_str"], a["tagid_list"]) == ("ADD_SCENE_CHANNELS", 98765, None, "[101]")
    gone = rows[f"{OA_APPID}/oFAKEbg2"]  # an unfollow: a row, not a quarantined one
    assert (gone["subscribe"], gone["subscribed_at"], gone["unionid"], gone["_row_number"]) == (0, None, None, 1)
    c = rows[f"{OA_APPID}/oFAKEbg3"]
    assert (c["qr_scene_str"], c["_row_number"], c["subscribed_at"]) == ("parcel_card_03", 2, datetime(2024, 1, 2, 8, 0))


# --- mini-program logins as JSON lines -------------------------------------------------------------


def test_mp_logins_jsonl(run):
    put(run.landing, "mp_logins", "login_log.jsonl", jsonl(
        {"log_id": "J0001", "appid": MP_APPID, "openid": "oFAKEmpj1", "unionid": "oFAKEunj1",
         "phone": "13900000011", "login_time": "2024-03-01 09:00:00"},
        {"log_id": "J0002", "openid": "oFAKEmpj2", "phoneNumber": "+8613900000012", "login_time": 1709254800},
        {"log_id": "J0003", "openid": "oFAKEmpj3", "login_time": 1709254800123},
        {"log_id": "J0004", "login_time": "2024-03-01 09:00:00"},
    ))
    [res] = run.source("mp_logins").files
    assert (res.status, res.layout, res.rows_loaded, res.rows_quarantined) == ("loaded", "mp_login_jsonl", 3, 1)
    rows = rows_by_id(run, "raw.mp_logins")
    assert rows["J0001"]["phone"] == "13900000011" and rows["J0001"]["unionid"] == "oFAKEunj1"
    assert rows["J0001"]["logged_in_at"] == datetime(2024, 3, 1, 9, 0)
    assert (rows["J0002"]["appid"], rows["J0002"]["phone"]) == (MP_APPID, "+8613900000012")
    assert rows["J0002"]["logged_in_at"] == datetime(2024, 3, 1, 9, 0)  # unix seconds, China time
    assert rows["J0003"]["logged_in_at"] == datetime(2024, 3, 1, 9, 0, 0, 123000)  # unix millis
    assert quarantine(run) == [("mp_logins/login_log.jsonl", 4, "openid", "missing required value")]


# --- WeCom batch/get_by_user ------------------------------------------------------------------------

BATCH_PAGE = {
    "errcode": 0, "errmsg": "ok", "next_cursor": "CURSOR_FAKE_1",
    "external_contact_list": [
        {"external_contact": {"external_userid": "wmFAKEbatch000000000000001", "name": "测试客户甲", "type": 1,
                              "gender": 2, "unionid": "oFAKEun0000000000000000009"},
         "follow_info": {"userid": "staff_07", "remark": "甲", "description": "", "createtime": 1704067200,
                         "tag_id": ["etFAKEtag1", "etFAKEtag2"], "remark_corp_name": "",
                         "remark_mobiles": ["13900000021"], "oper_userid": "staff_07", "add_way": 16,
                         "state": "parcel_card_spring"}},
        {"external_contact": {"external_userid": "wmFAKEbatch000000000000002", "name": "测试客户乙", "type": 2,
                              "gender": 0},
         "follow_info": {"userid": "staff_07", "createtime": 1704070800, "tag_id": [], "remark_mobiles": [],
                         "add_way": 1, "state": ""}},
    ],
}


def test_wecom_batch_get_by_user_jsonl_and_json(run):
    last = {"errcode": 0, "errmsg": "ok", "external_contact_list": [], "next_cursor": ""}
    put(run.landing, "wecom_contacts", "batch_staff_07.jsonl",
        jsonl(BATCH_PAGE, last, {"errcode": 40096, "errmsg": "invalid external userid"}))
    put(run.landing, "wecom_contacts", "batch_staff_08.json", json.dumps({
        "errcode": 0, "errmsg": "ok", "external_contact_list": [
            {"external_contact": {"external_userid": "wmFAKEbatch000000000000001", "name": "测试客户甲", "type": 1},
             "follow_info": {"userid": "staff_08", "createtime": 1704153600, "add_way": 3, "state": "card_share"}}]},
        ensure_ascii=False))
    res = {f.path.split("/")[-1]: f for f in run.source("wecom_contacts").files}
    assert (res["batch_staff_07.jsonl"].layout, res["batch_staff_07.jsonl"].rows_loaded,
            res["batch_staff_07.jsonl"].rows_quarantined) == ("wecom_batch_get_by_user_jsonl", 2, 1)
    assert (res["batch_staff_08.json"].layout, res["batch_staff_08.json"].rows_loaded) == ("wecom_batch_get_by_user_json", 1)
    rows = rows_by_id(run, "raw.wecom_contacts")
    assert list(rows) == [
        "wmFAKEbatch000000000000001/staff_07", "wmFAKEbatch000000000000002/staff_07",
        "wmFAKEbatch000000000000001/staff_08",
    ]
    a = rows["wmFAKEbatch000000000000001/staff_07"]
    assert (a["corp_id"], a["contact_name"], a["contact_type"], a["gender"]) == (CORP_ID, "测试客户甲", 1, 2)
    assert a["unionid"] == "oFAKEun0000000000000000009"
    assert (a["staff_userid"], a["added_at"], a["add_way"], a["state"], a["remark"]) == (
        "staff_07", datetime(2024, 1, 1, 8, 0), 16, "parcel_card_spring", "甲")
    assert json.loads(a["remark_mobiles"]) == ["13900000021"]
    assert json.loads(a["tags"]) == ["etFAKEtag1", "etFAKEtag2"]  # batch responses carry tag ids
    b = rows["wmFAKEbatch000000000000002/staff_07"]
    assert (b["contact_type"], b["unionid"], b["state"], b["_row_number"]) == (2, None, None, 1)
    c = rows["wmFAKEbatch000000000000001/staff_08"]
    assert (c["add_way"], c["state"], c["added_at"]) == (3, "card_share", datetime(2024, 1, 2, 8, 0))
    assert quarantine(run) == [
        ("wecom_contacts/batch_staff_07.jsonl", 3, "errcode", "WeCom error response (errcode is not 0)"),
    ]


def test_wecom_get_response_saved_as_json(run):
    response = {"errcode": 0, "errmsg": "ok",
                "external_contact": {"external_userid": "wmFAKEget1", "name": "测试", "type": 1, "gender": 1},
                "follow_user": [{"userid": "staff_01", "createtime": 1700000000, "add_way": 1, "state": "poster",
                                 "tags": [{"group_name": "来源", "tag_name": "海报", "type": 1}]}]}
    put(run.landing, "wecom_contacts", "get_wmFAKEget1.json", json.dumps(response, ensure_ascii=False))
    [res] = run.source("wecom_contacts").files
    assert (res.layout, res.rows_loaded) == ("wecom_externalcontact_json", 1)
    [row] = run.rows("SELECT record_id, state, tags FROM raw.wecom_contacts")
    assert row["record_id"] == "wmFAKEget1/staff_01" and row["state"] == "poster"
    assert json.loads(row["tags"])[0]["tag_name"] == "海报"


# --- Youzan -----------------------------------------------------------------------------------------

YOUZAN = {
    "订单号": ["E20240301000001", "E20240301000002", "E20240301000003", "E20240301000004", "E20240301000005",
            "E20240301000006", "E20240301000007"],
    "订单状态": ["交易成功", "待付款", "交易关闭", "交易关闭", "已发货", "待发货", "交易成功"],
    "订单创建时间": ["2024-03-01 10:00:00"] * 7,
    "买家付款时间": ["2024-03-01 10:00:30", "", "", "2024-03-01 10:00:30", "2024-03-01 10:00:30",
               "2024-03-01 10:00:30", "2024-03-01 10:00:30"],
    "订单实付金额": ["128.00", "66.60", "0.00", "50.00", "99.90", "30", "88.80"],
    "订单已退款金额": ["0.00", "", "0.00", "50.00", "", "10.00", "88.80"],
    "买家昵称": ["测试买家A", "测试买家B", "测试买家B", "测试买家C", "测试买家A", "测试买家D", "测试买家E"],
    "买家手机号": ["13900000031", "139****0032", "", "13900000033", "13900000031", "", ""],
    "收货人手机号": ["13900000039", "", "", "", "", "", ""],
    "提货人手机号": ["", "", "", "", "", "13900000036", ""],
    "商品名称": ["测试商品"] * 7,  # extra column: ignored
}
YOUZAN_EXPECTED = {
    "E20240301000001": ("交易成功", "paid", D("128.00"), D("0.00"), "13900000039"),
    "E20240301000002": ("待付款", "unpaid", D("66.60"), D("0.00"), None),
    "E20240301000003": ("交易关闭", "cancelled", D("0.00"), D("0.00"), None),
    "E20240301000004": ("交易关闭", "refunded", D("50.00"), D("50.00"), None),
    "E20240301000005": ("已发货", "paid", D("99.90"), D("0.00"), None),
    "E20240301000006": ("待发货", "partially_refunded", D("30.00"), D("10.00"), "13900000036"),  # self-pickup
    "E20240301000007": ("交易成功", "refunded", D("88.80"), D("88.80"), None),
}


def _check_youzan(run, res):
    assert (res.status, res.layout, res.rows_loaded, res.rows_quarantined) == ("loaded", "youzan_orders", 7, 0), res.message
    rows = {r["order_id"]: r for r in run.rows("SELECT * FROM raw.orders WHERE platform = 'youzan'")}
    got = {k: (r["raw_status"], r["order_status"], r["paid_amount"], r["refunded_amount"], r["receiver_phone"])
           for k, r in rows.items()}
    assert got == YOUZAN_EXPECTED
    a = rows["E20240301000001"]
    assert a["record_id"] == "youzan/E20240301000001"
    assert (a["buyer_account"], a["buyer_phone"], a["appid"], a["buyer_openid"]) == ("测试买家A", "13900000031", None, None)
    assert a["created_at"] == datetime(2024, 3, 1, 10, 0) and a["paid_at"] == datetime(2024, 3, 1, 10, 0, 30)
    assert rows["E20240301000002"]["buyer_phone"] == "139****0032"  # masked: kept as exported
    assert rows["E20240301000003"]["paid_at"] is None


def test_youzan_orders_csv(run):
    text = pl.DataFrame(YOUZAN).write_csv()
    put(run.landing, "orders_youzan", "youzan_orders_20240301.csv", "\ufeff" + text)  # Excel-style BOM
    [res] = run.source("orders").files
    assert res.encoding == "utf-8-sig"
    _check_youzan(run, res)


def test_youzan_orders_xlsx(run):
    path = run.landing / "orders_youzan" / "youzan_orders_20240301.xlsx"
    path.parent.mkdir(parents=True)
    pl.DataFrame(YOUZAN).write_excel(path)
    [res] = run.source("orders").files
    _check_youzan(run, res)


def test_youzan_export_with_only_the_pickup_phone_column(run):
    frame = pl.DataFrame(YOUZAN).drop("收货人手机号").head(6)
    put(run.landing, "orders_youzan", "pickup.csv", frame.write_csv())
    [res] = run.source("orders").files
    assert (res.status, res.rows_loaded) == ("loaded", 6)
    phones = {r["order_id"]: r["receiver_phone"] for r in run.rows("SELECT order_id, receiver_phone FROM raw.orders")}
    assert phones["E20240301000006"] == "13900000036" and phones["E20240301000001"] is None


# --- Douyin -----------------------------------------------------------------------------------------

DOUYIN_HEADER = "主订单编号,子订单编号,选购商品,订单应付金额,订单提交时间,支付完成时间,订单状态,售后状态,收件人,收件人手机号"
DOUYIN_ROWS = [
    "\t4928000000000000001,\t4928000000000000001,测试商品,59.90,2024/03/01 10:00:00,2024/03/01 10:00:20,已完成,-,测*,#Zm9vYmFyCg==#Q0lQSEVS#1#",
    "\t4928000000000000002,\t4928000000000000002,测试商品,19.90,2024/03/01 11:00:00,,待支付,-,测*,#Y2lwaGVy#Q0lQSEVS#1#",
    "\t4928000000000000003,\t4928000000000000003,测试商品,29.00,2024/03/01 12:00:00,,已关闭,-,测*,",
    "\t4928000000000000004,\t4928000000000000004,测试商品,39.00,2024/03/01 13:00:00,2024/03/01 13:00:05,已关闭,退款成功,测*,$$c2VjcmV0$$",
    "\t4928000000000000005,\t4928000000000000005,测试商品,49.00,2024/03/01 14:00:00,2024/03/01 14:00:05,已发货,退款成功,测*,",
    "\t4928000000000000006,\t4928000000000000006,测试商品,99.00,2024/03/01 15:00:00,2024/03/01 15:00:05,备货中,售后关闭,测*,",
    "\t4928000000000000007,\t4928000000000000007,测试商品,9.90,2024/03/01 16:00:00,2024/03/01 16:00:05,已完成,换货成功,测*,",
]


def test_douyin_orders_bom_tabs_ciphertext(run):
    put(run.landing, "orders_douyin", "douyin_orders_20240301.csv",
        b"\xef\xbb\xbf" + ("\r\n".join([DOUYIN_HEADER, *DOUYIN_ROWS]) + "\r\n").encode("utf-8"))
    [res] = run.source("orders").files
    assert (res.status, res.layout, res.encoding) == ("loaded", "douyin_orders", "utf-8-sig")
    assert (res.rows_loaded, res.rows_quarantined) == (6, 1)
    rows = {r["order_id"]: r for r in run.rows("SELECT * FROM raw.orders")}
    assert list(rows)[0] == "4928000000000000001"  # the tab prefix is gone
    got = {k[-1]: (r["raw_status"], r["order_status"], r["paid_amount"], r["refunded_amount"]) for k, r in rows.items()}
    assert got == {
        "1": ("已完成", "paid", D("59.90"), D("0.00")),
        "2": ("待支付", "unpaid", D("19.90"), D("0.00")),
        "3": ("已关闭", "cancelled", D("29.00"), D("0.00")),
        "4": ("已关闭", "refunded", D("39.00"), D("39.00")),
        "5": ("已发货", "refunded", D("49.00"), D("49.00")),  # after-sale refund succeeded
        "6": ("备货中", "paid", D("99.00"), D("0.00")),  # after-sale closed without a refund
    }
    a = rows["4928000000000000001"]
    assert a["record_id"] == "douyin/4928000000000000001" and a["platform"] == "douyin"
    assert a["receiver_phone"] == "#Zm9vYmFyCg==#Q0lQSEVS#1#"  # ciphertext kept as exported
    assert rows["4928000000000000004"]["receiver_phone"] == "$$c2VjcmV0$$"
    assert (a["created_at"], a["paid_at"]) == (datetime(2024, 3, 1, 10, 0), datetime(2024, 3, 1, 10, 0, 20))
    assert a["receiver_name"] == "测*" and a["buyer_account"] is None
    # an after-sale word no rule knows is quarantined, so a new platform word is noticed, not guessed
    assert quarantine(run) == [("orders_douyin/douyin_orders_20240301.csv", 7, "订单状态", "no order_status rule matches this value")]
    assert run.rows("SELECT raw_value FROM raw.quarantine") == [{"raw_value": "已完成"}]


# --- OneID's own generic order CSV ------------------------------------------------------------------


def test_generic_orders_csv(run):
    put(run.landing, "orders_generic", "orders.csv", (
        "order_id,order_status,paid_amount,refunded_amount,created_at,paid_at,platform,buyer_phone,buyer_account\n"
        "G001,paid,100.00,,2024-03-01 10:00:00,2024-03-01 10:00:01,,13900000041,\n"
        "G002,refunded,20.5,20.5,2024-03-01T10:00:00+08:00,2024-03-01 10:00:01,weidian,,wd_buyer_01\n"
        "G003,cancelled,0,0,2024-03-01 10:00,,,,\n"
        "G004,shipped,1,0,2024-03-01 10:00:00,,,,\n"
    ))
    # the minimum: four columns
    put(run.landing, "orders_generic", "minimal.csv", "order_id,order_status,paid_amount,created_at\nG005,unpaid,9.9,2024-03-02 08:00:00\n")
    res = {f.path.split("/")[-1]: f for f in run.source("orders").files}
    assert (res["orders.csv"].rows_loaded, res["orders.csv"].rows_quarantined) == (3, 1)
    assert (res["minimal.csv"].layout, res["minimal.csv"].rows_loaded) == ("generic_orders_csv", 1)
    rows = rows_by_id(run, "raw.orders")
    assert list(rows) == ["generic/G005", "generic/G001", "weidian/G002", "generic/G003"]
    g1 = rows["generic/G001"]
    assert (g1["platform"], g1["order_status"], g1["raw_status"], g1["paid_amount"], g1["refunded_amount"]) == (
        "generic", "paid", "paid", D("100.00"), D("0.00"))
    assert g1["buyer_phone"] == "13900000041"
    g2 = rows["weidian/G002"]  # a platform column in the file wins over the folder's scope
    assert (g2["platform"], g2["buyer_account"], g2["order_status"], g2["refunded_amount"]) == ("weidian", "wd_buyer_01", "refunded", D("20.50"))
    assert g2["created_at"] == datetime(2024, 3, 1, 10, 0)
    assert rows["generic/G003"]["created_at"] == datetime(2024, 3, 1, 10, 0)
    assert rows["generic/G005"]["paid_amount"] == D("9.90")
    [q] = run.rows("SELECT row_number, column_name, raw_value, reason FROM raw.quarantine")
    assert (q["row_number"], q["column_name"], q["raw_value"]) == (4, "order_status", "shipped")
    assert q["reason"].startswith("unknown value (expected one of unpaid, paid, partially_refunded")


# --- CRM: XLSX and English headers ------------------------------------------------------------------


def test_crm_members_xlsx(run):
    path = run.landing / "crm_members" / "members.xlsx"
    path.parent.mkdir(parents=True)
    pl.DataFrame({
        "会员卡号": ["8800000000101", "8800000000102"], "手机号": ["13900000051", ""], "姓名": ["测试会员丁", "测试会员戊"],
        "性别": ["女", "保密"], "生日": ["1992-02-29", ""], "等级": ["银卡会员", "普通会员"], "积分": ["300", "0"],
        "注册时间": ["2024-03-01 10:00:00", "2024-03-02 11:00:00"], "消费金额": ["1,288.00", "0"], "来源渠道": ["wecom_qr", ""],
    }).write_excel(path)
    [res] = run.source("crm_members").files
    assert (res.status, res.layout, res.rows_loaded, res.rows_quarantined) == ("loaded", "crm_members_csv", 2, 0)
    rows = rows_by_id(run, "raw.crm_members")
    m = rows["8800000000101"]
    assert (m["gender"], m["birthday"], m["points"], m["lifetime_spend"]) == ("female", date(1992, 2, 29), 300, D("1288.00"))
    assert (m["source_channel"], m["crm_name"], m["registered_at"]) == ("wecom_qr", "demo_crm", datetime(2024, 3, 1, 10, 0))
    assert (rows["8800000000102"]["gender"], rows["8800000000102"]["phone"]) == (None, None)


def test_crm_members_english_headers(run):
    put(run.landing, "crm_members", "members_en.csv", (
        "member_id,mobile,name,gender,birthday,tier,points,registered_at,total_spend,channel\n"
        "M0001,13900000061,Test Member,F,1990/05/06,Gold,1200,2024-03-01 10:00,3000.5,poster_spring\n"
        "M0002,,Test Other,unknown,,,0,2024-03-02,0,\n"
        "M0003,13900000063,,X,,,abc,2024-03-03 10:00:00,,\n"
    ))
    [res] = run.source("crm_members").files
    assert (res.status, res.layout, res.rows_loaded, res.rows_quarantined) == ("loaded", "crm_members_en", 2, 1)
    rows = rows_by_id(run, "raw.crm_members")
    m = rows["M0001"]
    assert (m["phone"], m["member_name"], m["gender"], m["birthday"]) == ("13900000061", "Test Member", "female", date(1990, 5, 6))
    assert (m["declared_tier"], m["points"], m["registered_at"], m["lifetime_spend"], m["source_channel"]) == (
        "Gold", 1200, datetime(2024, 3, 1, 10, 0), D("3000.50"), "poster_spring")
    assert (rows["M0002"]["gender"], rows["M0002"]["registered_at"]) == (None, datetime(2024, 3, 2))
    assert quarantine(run) == [("crm_members/members_en.csv", 3, "points", "not an integer")]


# --- referrals: unionid-only and openid-only sides ---------------------------------------------------


def test_referrals_with_unionid_only_or_openid_only_sides(run):
    put(run.landing, "referrals", "unionid_only.csv", (
        "invite_id,inviter_unionid,invitee_unionid,invited_at,campaign\n"
        "U001,oFAKEun0000000000000000071,oFAKEun0000000000000000072,2024-03-01 12:00:00,spring\n"
        "U002,oFAKEun0000000000000000071,,2024-03-01 12:00:00,spring\n"
    ))
    put(run.landing, "referrals", "openid_only.csv", (
        "invite_id,appid,inviter_openid,invitee_openid,invited_at\n"
        f"O001,{MP_APPID},oFAKEmp0000000000000000071,oFAKEmp0000000000000000073,2024-03-02 12:00:00\n"
    ))
    put(run.landing, "referrals", "mixed.csv", (
        "invite_id,appid,inviter_openid,inviter_unionid,invitee_openid,invitee_unionid,invited_at,campaign\n"
        f"X001,{MP_APPID},,oFAKEun0000000000000000071,oFAKEmp0000000000000000074,,2024-03-03 12:00:00,\n"
    ))
    res = {f.path.split("/")[-1]: f for f in run.source("referrals").files}
    assert {k: (v.status, v.rows_loaded, v.rows_quarantined) for k, v in res.items()} == {
        "mixed.csv": ("loaded", 1, 0), "openid_only.csv": ("loaded", 1, 0), "unionid_only.csv": ("loaded", 1, 1),
    }
    rows = rows_by_id(run, "raw.referrals")
    u = rows["U001"]
    assert (u["appid"], u["inviter_openid"], u["inviter_unionid"], u["invitee_openid"], u["invitee_unionid"]) == (
        MP_APPID, None, "oFAKEun0000000000000000071", None, "oFAKEun0000000000000000072")
    o = rows["O001"]
    assert (o["inviter_openid"], o["inviter_unionid"], o["invitee_openid"], o["campaign"]) == (
        "oFAKEmp0000000000000000071", None, "oFAKEmp0000000000000000073", None)
    x = rows["X001"]
    assert (x["inviter_openid"], x["inviter_unionid"], x["invitee_openid"]) == (None, "oFAKEun0000000000000000071", "oFAKEmp0000000000000000074")
    [q] = run.rows("SELECT source_file, row_number, column_name, reason FROM raw.quarantine")
    assert (q["source_file"], q["row_number"]) == ("referrals/unionid_only.csv", 2)
    assert q["column_name"] == "invitee_openid / invitee_unionid"
    assert q["reason"] == "missing required value (needs one of invitee_openid, invitee_unionid)"


def test_referral_file_without_any_invitee_column_is_rejected(run):
    put(run.landing, "referrals", "bad.csv", "invite_id,inviter_openid,invited_at\nI1,oA,2024-03-01 12:00:00\n")
    [res] = run.source("referrals").files
    assert res.status == "rejected"
    assert "closest referral_invites_csv (missing invitee_openid or invitee_unionid)" in res.message


# --- rejection and encodings for the new layouts ---------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "header", "expected"),
    [
        ("orders_youzan", "订单编号,订单状态,买家付款时间,订单实付金额,买家昵称,买家手机号",
         "closest youzan_orders (missing 订单号, 订单已退款金额)"),
        ("orders_douyin", "主订单编号,订单金额,订单提交时间,支付完成时间,订单状态,售后状态,收件人手机号",
         "closest douyin_orders (missing 订单应付金额)"),
        ("orders_generic", "order_id,status,paid_amount,created_at", "closest generic_orders_csv (missing order_status)"),
        ("crm_members", "member_id,phone,created", "crm_members_en (missing registered_at or register_time or join_time)"),
    ],
)
def test_new_layouts_reject_an_unknown_header_with_the_closest_layout(run, folder, header, expected):
    put(run.landing, folder, "x.csv", header + "\n" + ",".join(["1"] * len(header.split(","))) + "\n")
    source = "crm_members" if folder == "crm_members" else "orders"
    [res] = run.source(source).files
    assert res.status == "rejected" and expected in res.message, res.message


def test_gbk_files_in_utf8_folders_decode_and_utf8_files_in_a_gbk_folder_stay_utf8(run):
    youzan = pl.DataFrame(YOUZAN).write_csv()
    # GBK bytes where UTF-8 is expected (Youzan re-saved by Excel on Windows): decoded, not mojibake
    put(run.landing, "orders_youzan", "gbk.csv", youzan.encode("gbk"))
    douyin = "\r\n".join([DOUYIN_HEADER, *DOUYIN_ROWS[:2]]) + "\r\n"
    put(run.landing, "orders_douyin", "gbk_no_bom.csv", douyin.encode("gbk"))
    # UTF-8 bytes where the layout hints GB18030 (a Taobao report from a tool that writes UTF-8): stays UTF-8
    from ingest_fixtures import TAOBAO

    put(run.landing, "orders_taobao", "utf8.csv", TAOBAO.encode("utf-8"))
    res = {f.path: f for f in run.source("orders").files}
    assert {p: (r.status, r.encoding) for p, r in res.items()} == {
        "orders_youzan/gbk.csv": ("loaded", "gb18030"),
        "orders_douyin/gbk_no_bom.csv": ("loaded", "gb18030"),
        "orders_taobao/utf8.csv": ("loaded", "utf-8"),
    }
    names = {r["record_id"]: r["buyer_account"] or r["raw_status"] for r in run.rows("SELECT * FROM raw.orders")}
    assert names["youzan/E20240301000001"] == "测试买家A"
    assert names["douyin/4928000000000000001"] == "已完成"
    assert names["taobao/TB0001"] == "测试买家一"


def test_mis_encoded_new_layout_files_are_rejected_not_garbled(run):
    douyin = "\r\n".join([DOUYIN_HEADER, *DOUYIN_ROWS[:2]]) + "\r\n"
    # A BOM promises UTF-8; GBK bytes behind it are rejected, not guessed at.
    put(run.landing, "orders_douyin", "bom_then_gbk.csv", b"\xef\xbb\xbf" + douyin.encode("gbk"))
    # UTF-8 text glued to GBK text (two exports concatenated): no single decoding is right.
    glued = ("订单号,订单状态,买家付款时间,订单实付金额,订单已退款金额,买家昵称,买家手机号\n"
             + "E1,交易成功,2024-03-01 10:00:00,1.00,0,测试买家甲,\n" * 20000).encode("utf-8")
    put(run.landing, "orders_youzan", "glued.csv", glued + "E2,交易成功,2024-03-01 10:00:00,1.00,0,测试买家乙,\n".encode("gbk"))
    # Latin-1 bytes are not what any Chinese export uses.
    put(run.landing, "orders_generic", "latin1.csv",
        "order_id,order_status,paid_amount,created_at\nG1,paid,1,2024-03-01 10:00:00\nCaf\xe9,paid,1,2024-03-01 10:00:00\n".encode("latin-1"))
    res = {f.path.split("/")[-1]: f for f in run.source("orders").files}
    assert all(r.status == "rejected" for r in res.values()), {k: r.message for k, r in res.items()}
    assert "BOM" in res["bom_then_gbk.csv"].message
    assert "mixed encodings" in res["glued.csv"].message and "line 20002" in res["glued.csv"].message
    assert "cannot decode" in res["latin1.csv"].message and "line 3" in res["latin1.csv"].message
    assert run.count("raw.orders") == 0
