"""Idempotency, quarantine, rejection, encodings and other things real landing folders do."""

from __future__ import annotations

import gzip
import io
import json
import shutil
from decimal import Decimal

import polars as pl
import pytest
from ingest_fixtures import FILES, MP_ORDERS, TAOBAO_HEADER, TAOBAO_ROWS, put, write_landing

import pipelines.ingest.load as load_module
from pipelines.ingest import ingest_source

MP_HEADER = MP_ORDERS.splitlines()[0]
GOOD_MP = "MP1001,wxmp0000000demo01,oFAKEmp01,,,,,PAID,100,0,2024-02-01 10:00:00,2024-02-01 10:00:01"


def mp_csv(*rows: str) -> str:
    return "\n".join([MP_HEADER, *rows]) + "\n"


# --- idempotency ----------------------------------------------------------------------------------


def test_same_file_twice_changes_nothing(run):
    write_landing(run.landing)
    run.all()
    before = run.counts()
    second = run.all()
    after = run.counts()
    assert {t: n for t, n in after.items() if t != "load_log"} == {t: n for t, n in before.items() if t != "load_log"}
    assert all(f.status == "duplicate" and f.message == "already loaded" for r in second.values() for f in r.files)
    # the re-run is logged once per file as a duplicate ...
    assert after["load_log"] == before["load_log"] + len(FILES)
    assert run.count("raw.load_log WHERE status = 'duplicate' AND rows_loaded = 0") == len(FILES)
    # ... and a third run over the unchanged folder adds nothing at all
    third = run.all()
    assert run.counts() == after
    assert all(f.status == "duplicate" and not f.logged for r in third.values() for f in r.files)


def test_renamed_copy_is_a_duplicate(run):
    write_landing(run.landing, ["orders_miniprogram"])
    run.source("orders")
    orders = run.count("raw.orders")
    src = run.landing / "orders_miniprogram" / "orders_202401.csv"
    shutil.copy(src, run.landing / "orders_miniprogram" / "orders_202401 (1).csv")
    src.rename(run.landing / "orders_miniprogram" / "renamed.csv")

    report = run.source("orders")
    assert run.count("raw.orders") == orders
    assert [(f.path, f.status) for f in report.files] == [
        ("orders_miniprogram/orders_202401 (1).csv", "duplicate"),
        ("orders_miniprogram/renamed.csv", "duplicate"),
    ]
    assert report.files[0].message == "same bytes already loaded from orders_miniprogram/orders_202401.csv"
    log = run.rows("SELECT source_file, status FROM raw.load_log ORDER BY loaded_at, source_file")
    assert [(r["source_file"], r["status"]) for r in log] == [
        ("orders_miniprogram/orders_202401.csv", "loaded"),
        ("orders_miniprogram/orders_202401 (1).csv", "duplicate"),
        ("orders_miniprogram/renamed.csv", "duplicate"),
    ]

    run.source("orders")  # and again: every outcome is already logged
    assert run.count("raw.load_log") == 3


def test_same_order_in_a_later_export_is_a_new_raw_row(run):
    put(run.landing, "orders_miniprogram", "a.csv", mp_csv(GOOD_MP))
    put(run.landing, "orders_miniprogram", "b.csv", mp_csv(GOOD_MP.replace(",PAID,100,0,", ",REFUNDED,100,100,")))
    run.source("orders")
    rows = run.rows("SELECT record_id, order_status FROM raw.orders ORDER BY _source_file")
    assert rows == [
        {"record_id": "miniprogram_shop/MP1001", "order_status": "paid"},
        {"record_id": "miniprogram_shop/MP1001", "order_status": "refunded"},
    ]


# --- quarantine -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_row", "column", "raw_value", "reason"),
    [
        ("MP2,wxmp0000000demo01,oFAKEmp02,,,,,PAID,abc,0,2024-02-01 10:00:00,", "pay_amount_fen", "abc", "not a whole number of fen"),
        ("MP2,wxmp0000000demo01,oFAKEmp02,,,,,PAID,-100,0,2024-02-01 10:00:00,", "pay_amount_fen", "-100", "negative amount"),
        ("MP2,wxmp0000000demo01,oFAKEmp02,,,,,PAID,19.9,0,2024-02-01 10:00:00,", "pay_amount_fen", "19.9", "not a whole number of fen"),
        ("MP2,wxmp0000000demo01,oFAKEmp02,,,,,PAID,100,0,2025/13/45 25:61,", "created_at", "2025/13/45 25:61", "unparseable time"),
        ("MP2,wxmp0000000demo01,,,,,,PAID,100,0,2024-02-01 10:00:00,", "openid", None, "missing required value"),
        (",wxmp0000000demo01,oFAKEmp02,,,,,PAID,100,0,2024-02-01 10:00:00,", "order_id", None, "missing required value"),
        ("MP2,wxmp0000000demo01,oFAKEmp02,,,,,LOST,100,0,2024-02-01 10:00:00,", "order_status", "LOST", "no order_status rule matches"),
    ],
)
def test_one_bad_row_is_quarantined_and_the_rest_loads(run, bad_row, column, raw_value, reason):
    put(run.landing, "orders_miniprogram", "orders.csv", mp_csv(GOOD_MP, bad_row, GOOD_MP.replace("MP1001", "MP1003")))
    [res] = run.source("orders").files
    assert (res.status, res.rows_loaded, res.rows_quarantined) == ("loaded", 2, 1)
    assert f"row 2, column {column}" in res.message
    assert [r["order_id"] for r in run.rows("SELECT order_id FROM raw.orders ORDER BY _row_number")] == ["MP1001", "MP1003"]
    [q] = run.rows("SELECT * FROM raw.quarantine")
    assert q["source"] == "orders"
    assert q["source_file"] == "orders_miniprogram/orders.csv"
    assert q["file_hash"] == res.file_hash
    assert (q["row_number"], q["column_name"], q["raw_value"]) == (2, column, raw_value)
    assert q["reason"].startswith(reason)
    [log] = run.rows("SELECT * FROM raw.load_log")
    assert (log["status"], log["rows_loaded"], log["rows_quarantined"]) == ("loaded", 2, 1)


def test_taobao_bad_rows_name_the_chinese_column(run):
    rows = [TAOBAO_ROWS[0], TAOBAO_ROWS[1].replace(",0.00,", ",-0.01,"), TAOBAO_ROWS[2].replace("2024-01-02 10:00:00", "昨天 14:30")]
    put(run.landing, "orders_taobao", "t.csv", ("\r\n".join([TAOBAO_HEADER, *rows]) + "\r\n").encode("gbk"))
    [res] = run.source("orders").files
    assert (res.rows_loaded, res.rows_quarantined) == (1, 2)
    q = run.rows("SELECT row_number, column_name, raw_value, reason FROM raw.quarantine ORDER BY row_number")
    assert q == [
        {"row_number": 2, "column_name": "买家实际支付金额", "raw_value": "-0.01", "reason": "negative amount"},
        {"row_number": 3, "column_name": "订单创建时间", "raw_value": "昨天 14:30",
         "reason": "unparseable time (expected %Y-%m-%d %H:%M:%S)"},
    ]


def test_taobao_receiving_address_is_kept_in_raw_when_the_export_has_it(run):
    header = TAOBAO_HEADER.replace("联系手机,", "联系手机,收货地址,")
    rows = [TAOBAO_ROWS[0].replace("138****1234,", "138****1234,浙江省 杭州市 西湖区 测试路1号,"),
            TAOBAO_ROWS[1].replace("13900000002,", "13900000002,,")]
    put(run.landing, "orders_taobao", "t.csv", ("\r\n".join([header, *rows]) + "\r\n").encode("gbk"))
    [res] = run.source("orders").files
    assert (res.status, res.rows_loaded) == ("loaded", 2)
    got = run.rows("SELECT order_id, receiver_address, receiver_province FROM raw.orders ORDER BY order_id")
    assert got == [
        {"order_id": "TB0001", "receiver_address": "浙江省 杭州市 西湖区 测试路1号", "receiver_province": None},
        {"order_id": "TB0002", "receiver_address": None, "receiver_province": None},
    ]


def test_a_warehouse_from_before_a_new_canonical_column_gains_it_and_keeps_its_rows(run):
    from pipelines.ingest.catalog import table_columns

    old = [(n, t) for n, t in table_columns("orders") if n not in ("receiver_address", "receiver_province")]
    run.con.execute("CREATE SCHEMA raw")
    run.con.execute(f"CREATE TABLE raw.orders ({', '.join(f'{n} {t}' for n, t in old)})")
    values = {"record_id": "taobao/OLD1", "platform": "taobao", "order_id": "OLD1", "paid_amount": 1}
    run.con.execute(f"INSERT INTO raw.orders ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                    list(values.values()))
    put(run.landing, "orders_taobao", "t.csv", ("\r\n".join([TAOBAO_HEADER, TAOBAO_ROWS[0]]) + "\r\n").encode("gbk"))
    [res] = run.source("orders").files
    assert (res.status, res.rows_loaded) == ("loaded", 1)
    columns = [r["column_name"] for r in run.rows(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'raw' AND table_name = 'orders'")]
    assert {"receiver_address", "receiver_province"} <= set(columns)
    # appended after the load columns: inserts name their columns, so the order of a migrated table is free
    assert columns[-2:] == ["receiver_address", "receiver_province"] and len(columns) == len(table_columns("orders"))
    assert [r["order_id"] for r in run.rows("SELECT order_id FROM raw.orders ORDER BY order_id")] == ["OLD1", "TB0001"]


def test_row_with_two_bad_values_gives_two_entries_but_counts_once(run):
    put(run.landing, "orders_miniprogram", "o.csv", mp_csv(GOOD_MP, "MP2,x,oFAKE,,,,,PAID,abc,0,never,"))
    [res] = run.source("orders").files
    assert (res.rows_loaded, res.rows_quarantined) == (1, 1)
    q = run.rows("SELECT column_name FROM raw.quarantine ORDER BY column_name")
    assert [r["column_name"] for r in q] == ["created_at", "pay_amount_fen"]


def test_yuan_amounts_are_exact_and_strict(run):
    rows = [
        TAOBAO_ROWS[0].replace(",19.90,", ",0.1,"),
        TAOBAO_ROWS[0].replace("TB0001", "TB0002").replace(",19.90,", ",12.345,"),
        TAOBAO_ROWS[0].replace("TB0001", "TB0003").replace(",19.90,", ',"1,234.56",'),
    ]
    put(run.landing, "orders_taobao", "t.csv", ("\r\n".join([TAOBAO_HEADER, *rows])).encode("gbk"))
    run.source("orders")
    amounts = {r["order_id"]: r["paid_amount"] for r in run.rows("SELECT order_id, paid_amount FROM raw.orders")}
    assert amounts == {"TB0001": Decimal("0.10"), "TB0003": Decimal("1234.56")}
    [q] = run.rows("SELECT raw_value, reason FROM raw.quarantine")
    assert q["raw_value"] == "12.345" and "at most 2 decimals" in q["reason"]


def test_fen_to_yuan_is_exact_for_large_values(run):
    fen = ["1", "10", "99", "100", "1999", "123456789012345678"]
    rows = [GOOD_MP.replace("MP1001", f"MP{i}").replace(",PAID,100,0,", f",PAID,{f},0,") for i, f in enumerate(fen)]
    put(run.landing, "orders_miniprogram", "o.csv", mp_csv(*rows))
    run.source("orders")
    got = [r["paid_amount"] for r in run.rows("SELECT paid_amount FROM raw.orders ORDER BY _row_number")]
    assert got == [Decimal("0.01"), Decimal("0.10"), Decimal("0.99"), Decimal("1.00"), Decimal("19.99"),
                   Decimal("1234567890123456.78")]


def test_malformed_json_line_is_quarantined_not_the_file(run):
    lines = [
        '{"subscribe": 1, "openid": "oFAKE1", "subscribe_time": 1700000000}',
        '{"subscribe": 1, "openid": "oFAKE2", "subscribe_time": ',
        "",
        '["not", "an", "object"]',
        '{"subscribe": 1, "openid": "oFAKE3", "subscribe_time": "yesterday"}',
        '{"subscribe": 1, "unionid": "oUFAKE4"}',
        '{"subscribe": 0, "openid": "oFAKE5"}',
    ]
    put(run.landing, "oa_followers", "f.jsonl", "\n".join(lines) + "\n")
    [res] = run.source("oa_followers").files
    assert (res.status, res.rows_loaded, res.rows_quarantined) == ("loaded", 2, 4)
    assert [r["openid"] for r in run.rows("SELECT openid FROM raw.oa_followers ORDER BY _row_number")] == ["oFAKE1", "oFAKE5"]
    q = run.rows("SELECT row_number, column_name, raw_value, reason FROM raw.quarantine ORDER BY row_number")
    assert [r["row_number"] for r in q] == [2, 4, 5, 6]  # physical line numbers; the blank line 3 is skipped
    assert q[0]["reason"].startswith("malformed JSON") and q[0]["column_name"] is None
    assert q[0]["raw_value"] == lines[1]
    assert q[1]["reason"].startswith("not a JSON object")
    assert (q[2]["column_name"], q[2]["raw_value"]) == ("subscribe_time", "yesterday")
    assert (q[3]["column_name"], q[3]["reason"]) == ("openid", "missing required value")


def test_wecom_error_responses_and_odd_shapes_are_quarantined(run):
    lines = [
        '{"errcode": 0, "external_contact": {"external_userid": "wmFAKE1"}, "follow_user": [{"userid": "s1", "createtime": 1700000000}]}',
        '{"errcode": 84061, "errmsg": "not external contact"}',
        '{"errcode": 0, "external_contact": {"external_userid": "wmFAKE2"}, "follow_user": []}',
        '{"errcode": 0, "external_contact": "wmFAKE3", "follow_user": []}',
    ]
    put(run.landing, "wecom_contacts", "w.jsonl", "\n".join(lines))
    [res] = run.source("wecom_contacts").files
    assert (res.rows_loaded, res.rows_quarantined) == (1, 3)
    q = run.rows("SELECT row_number, column_name, reason FROM raw.quarantine ORDER BY row_number, column_name")
    assert {"row_number": 2, "column_name": "errcode", "reason": "WeCom error response (errcode is not 0)"} in q
    assert {"row_number": 3, "column_name": "follow_user[].userid", "reason": "missing required value"} in q
    assert [r for r in q if r["row_number"] == 4][0]["reason"].startswith("unexpected JSON structure")


def test_ragged_csv_row_is_quarantined(run):
    put(run.landing, "orders_miniprogram", "o.csv", mp_csv(GOOD_MP, GOOD_MP.replace("测试", "").replace(",PAID,", ",PAID,extra,"), GOOD_MP.replace("MP1001", "MP1003")))
    [res] = run.source("orders").files
    assert (res.rows_loaded, res.rows_quarantined) == (2, 1)
    [q] = run.rows("SELECT row_number, reason FROM raw.quarantine")
    assert q == {"row_number": 2, "reason": "row has 13 fields, the header has 12"}


# --- rejection --------------------------------------------------------------------------------------


def test_header_matching_no_layout_is_rejected_with_the_closest_layout(run):
    write_landing(run.landing, ["orders_taobao"])
    header = TAOBAO_HEADER.replace("订单编号", "订单号").replace(",退款金额", "")
    put(run.landing, "orders_taobao", "youzan.csv", (header + "\r\n" + TAOBAO_ROWS[0] + "\r\n").encode("gbk"))
    report = run.source("orders")
    by_path = {f.path: f for f in report.files}
    bad = by_path["orders_taobao/youzan.csv"]
    assert bad.status == "rejected"
    assert "orders_taobao/youzan.csv" in bad.message
    assert "closest taobao_orders_csv (missing 订单编号, 退款金额)" in bad.message
    assert by_path["orders_taobao/ExportOrderList202401.csv"].status == "loaded"  # other files go on
    [log] = run.rows("SELECT * FROM raw.load_log WHERE status = 'rejected'")
    assert log["source_file"] == "orders_taobao/youzan.csv" and log["message"] == bad.message
    assert log["rows_loaded"] == 0 and log["layout"] is None
    assert run.count("raw.orders") == FILES["orders_taobao"][2]

    run.source("orders")  # a rejection is retried but logged once
    assert run.count("raw.load_log WHERE status = 'rejected'") == 1


def test_fixing_a_rejected_file_loads_it(run):
    put(run.landing, "orders_miniprogram", "o.csv", "order_id,openid\nX,Y\n")
    assert run.source("orders").files[0].status == "rejected"
    put(run.landing, "orders_miniprogram", "o.csv", mp_csv(GOOD_MP))
    assert run.source("orders").files[0].status == "loaded"


def test_mis_encoded_file_is_decoded_or_rejected_never_mojibake(run):
    # The CRM layout says UTF-8 with BOM; someone re-saved the export from Excel as GBK.
    crm = FILES["crm_members"][1][3:].decode("utf-8")
    put(run.landing, "crm_members", "gbk_resave.csv", crm.encode("gbk"))
    # Latin-1 bytes are not text any Chinese export uses: reject.
    put(run.landing, "crm_members", "latin1.csv", (crm.splitlines()[0] + "\r\n8800000000009,1,Caf\xe9 M\xfcller,,,,0,,0,\r\n").encode("utf-8").replace("Caf\xe9 M\xfcller".encode(), "Caf\xe9 M\xfcller".encode("latin-1")))
    # A BOM promises UTF-8; the bytes after it are GBK: reject rather than guess.
    put(run.landing, "crm_members", "bom_then_gbk.csv", b"\xef\xbb\xbf" + crm.encode("gbk"))
    report = run.source("crm_members")
    res = {f.path.split("/")[1]: f for f in report.files}
    assert (res["gbk_resave.csv"].status, res["gbk_resave.csv"].encoding) == ("loaded", "gb18030")
    assert res["latin1.csv"].status == "rejected" and "cannot decode" in res["latin1.csv"].message
    assert "line 2" in res["latin1.csv"].message
    assert res["bom_then_gbk.csv"].status == "rejected" and "BOM" in res["bom_then_gbk.csv"].message
    names = [r["member_name"] for r in run.rows("SELECT member_name FROM raw.crm_members ORDER BY _row_number")]
    assert names == ["测试会员甲", "测试会员乙", "测试会员丙"]


def test_gbk_file_in_a_utf8_folder_round_trips(run):
    text = mp_csv(GOOD_MP.replace(",,,,,PAID", ",,,测试收货人,,PAID"))
    put(run.landing, "orders_miniprogram", "gbk.csv", text.encode("gbk"))
    [res] = run.source("orders").files
    assert res.status == "loaded" and res.encoding == "gb18030"
    assert run.rows("SELECT receiver_name FROM raw.orders")[0]["receiver_name"] == "测试收货人"


def test_empty_file_is_rejected_and_header_only_file_loads_nothing(run):
    put(run.landing, "orders_miniprogram", "empty.csv", b"")
    put(run.landing, "orders_miniprogram", "header_only.csv", mp_csv())
    put(run.landing, "oa_followers", "empty.jsonl", b"\n\n")
    res = {f.path: f for f in run.source("orders").files}
    assert res["orders_miniprogram/empty.csv"].status == "rejected"
    assert "empty" in res["orders_miniprogram/empty.csv"].message
    assert (res["orders_miniprogram/header_only.csv"].status, res["orders_miniprogram/header_only.csv"].rows_loaded) == ("loaded", 0)
    [oa] = run.source("oa_followers").files
    assert oa.status == "rejected" and "empty" in oa.message


def test_unknown_file_type_is_rejected_and_hidden_files_skipped(run):
    put(run.landing, "orders_miniprogram", "notes.pdf", b"%PDF-1.4")
    put(run.landing, "orders_miniprogram", ".DS_Store", b"\x00\x00")
    put(run.landing, "orders_miniprogram", "~$orders.xlsx", b"lock")
    [res] = run.source("orders").files
    assert res.path == "orders_miniprogram/notes.pdf" and res.status == "rejected"
    assert "reads .pdf files" in res.message and ".csv" in res.message


def test_missing_folders_are_reported_not_errors(run):
    report = run.source("orders")
    assert report.files == [] and report.missing_folders == [
        "orders_miniprogram", "orders_taobao", "orders_youzan", "orders_douyin", "orders_generic",
    ]
    assert run.count("raw.orders") == 0  # tables exist all the same


# --- other file shapes ------------------------------------------------------------------------------


def test_xlsx_export_reads_with_the_csv_layout(run):
    frame = pl.read_csv(io.StringIO("\n".join([TAOBAO_HEADER, *TAOBAO_ROWS[:3]])), infer_schema=False)
    path = run.landing / "orders_taobao" / "ExportOrderList.xlsx"
    path.parent.mkdir(parents=True)
    frame.write_excel(path)
    [res] = run.source("orders").files
    assert (res.status, res.rows_loaded, res.rows_quarantined, res.layout) == ("loaded", 3, 0, "taobao_orders_csv")
    rows = run.rows("SELECT order_id, buyer_account, paid_amount, order_status FROM raw.orders ORDER BY _row_number")
    assert rows[0] == {"order_id": "TB0001", "buyer_account": "测试买家一", "paid_amount": Decimal("19.90"), "order_status": "paid"}
    assert [r["order_status"] for r in rows] == ["paid", "cancelled", "refunded"]


def test_batchget_json_page(run):
    page = {"user_info_list": [
        {"subscribe": 1, "openid": "oFAKE1", "unionid": "oUFAKE1", "subscribe_time": 1700000000, "tagid_list": [7]},
        {"subscribe": 0, "openid": "oFAKE2"},
        "oFAKE3",
    ]}
    put(run.landing, "oa_followers", "batchget_0001.json", json.dumps(page))
    put(run.landing, "oa_followers", "batchget_error.json", '{"errcode": 40001, "errmsg": "invalid credential"}')
    res = {f.path: f for f in run.source("oa_followers").files}
    ok = res["oa_followers/batchget_0001.json"]
    assert (ok.status, ok.layout, ok.rows_loaded, ok.rows_quarantined) == ("loaded", "oa_user_info_batchget_json", 2, 1)
    assert run.rows("SELECT record_id, unionid, tagid_list, _row_number FROM raw.oa_followers ORDER BY 4") == [
        {"record_id": "wxoa0000000demo01/oFAKE1", "unionid": "oUFAKE1", "tagid_list": "[7]", "_row_number": 1},
        {"record_id": "wxoa0000000demo01/oFAKE2", "unionid": None, "tagid_list": None, "_row_number": 2},
    ]
    assert run.rows("SELECT row_number, reason FROM raw.quarantine") == [{"row_number": 3, "reason": "not a JSON object (got str)"}]
    bad = res["oa_followers/batchget_error.json"]
    assert bad.status == "rejected" and "errcode=40001 invalid credential" in bad.message


def test_gzipped_export_and_subfolders(run):
    put(run.landing, "orders_miniprogram", "2024/02/orders.csv.gz", gzip.compress(mp_csv(GOOD_MP).encode()))
    [res] = run.source("orders").files
    assert (res.path, res.status, res.rows_loaded) == ("orders_miniprogram/2024/02/orders.csv.gz", "loaded", 1)


def test_crlf_blank_lines_and_padding(run):
    text = "\r\n".join([MP_HEADER, "  " + GOOD_MP.replace(",PAID,", ", PAID ,"), "", GOOD_MP.replace("MP1001", "MP1002"), ""])
    put(run.landing, "orders_miniprogram", "o.csv", text)
    [res] = run.source("orders").files
    assert (res.rows_loaded, res.rows_quarantined) == (2, 0)
    rows = run.rows("SELECT order_id, raw_status, _row_number FROM raw.orders ORDER BY _row_number")
    assert rows == [
        {"order_id": "MP1001", "raw_status": "PAID", "_row_number": 1},
        {"order_id": "MP1002", "raw_status": "PAID", "_row_number": 3},
    ]


# --- transactions and reports -----------------------------------------------------------------------


def test_a_failing_load_leaves_nothing_of_that_file(run, monkeypatch):
    put(run.landing, "orders_miniprogram", "o.csv", mp_csv(GOOD_MP, "MP2,x,oFAKE,,,,,PAID,abc,0,2024-02-01 10:00:00,"))

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(load_module, "_insert_log", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        run.source("orders")
    monkeypatch.undo()
    assert (run.count("raw.orders"), run.count("raw.quarantine"), run.count("raw.load_log")) == (0, 0, 0)
    assert run.source("orders").files[0].status == "loaded"  # and the next run loads it
    assert (run.count("raw.orders"), run.count("raw.quarantine")) == (1, 1)


def test_large_file_is_loaded_in_chunks_in_one_transaction(run, monkeypatch):
    monkeypatch.setattr(load_module, "CHUNK_ROWS", 2)
    rows = [GOOD_MP.replace("MP1001", f"MP{i:04d}") for i in range(7)]
    rows[4] = rows[4].replace(",PAID,100,", ",PAID,abc,")
    put(run.landing, "orders_miniprogram", "o.csv", mp_csv(*rows))
    [res] = run.source("orders").files
    assert (res.rows_loaded, res.rows_quarantined) == (6, 1)
    assert run.rows("SELECT row_number FROM raw.quarantine") == [{"row_number": 5}]
    assert [r["_row_number"] for r in run.rows("SELECT _row_number FROM raw.orders ORDER BY 1")] == [1, 2, 3, 4, 6, 7]


def test_source_report(run):
    write_landing(run.landing, ["orders_miniprogram", "orders_taobao"])
    put(run.landing, "orders_taobao", "broken.csv", "nope\n1\n")
    report = run.source("orders")
    assert report.table == "raw.orders"
    assert report.folders == ["orders_miniprogram", "orders_taobao", "orders_youzan", "orders_douyin", "orders_generic"]
    assert report.totals() == {
        "files": 3, "files_loaded": 2, "files_duplicate": 0, "files_rejected": 1,
        "rows_loaded": FILES["orders_miniprogram"][2] + FILES["orders_taobao"][2], "rows_quarantined": 0,
    }
    d = report.to_dict()
    assert d["source"] == "orders" and len(d["file_results"]) == 3
    assert {"path", "file_hash", "layout", "status", "rows_loaded", "rows_quarantined", "message"} <= set(d["file_results"][0])
    assert "rejected orders_taobao/broken.csv" in report.summary()


def test_ingest_source_rejects_unknown_source(con, landing, config):
    with pytest.raises(KeyError, match="unknown canonical source"):
        ingest_source(con, "youzan", landing, config)


def test_symlinked_export_keeps_its_landing_name(run, tmp_path):
    target = tmp_path / "elsewhere" / "orders.csv"
    target.parent.mkdir()
    target.write_text(mp_csv(GOOD_MP), encoding="utf-8")
    (run.landing / "orders_miniprogram").mkdir()
    (run.landing / "orders_miniprogram" / "linked.csv").symlink_to(target)
    [res] = run.source("orders").files
    assert (res.path, res.status) == ("orders_miniprogram/linked.csv", "loaded")
