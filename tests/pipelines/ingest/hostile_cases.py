"""The hostile-input corpus: small broken, malicious or absurd exports, written at test time from this table.

Each case: (id, landing path, bytes, expected status, good rows, bad rows). Good rows must load, bad rows must
be quarantined with a reason (a rejected file loads nothing and says why). Kept as code rather than committed
files so the bytes (NULs, invalid UTF-8, a 0-byte XLSX) are reviewable in a diff.
"""

from __future__ import annotations

import gzip
import io

APPID = "wxmp0000000demo01"
LOGIN_HEADER = "log_id,appid,openid,unionid,phone,login_time\n"
ORDER_HEADER = "order_id,order_status,paid_amount,created_at,buyer_phone,receiver_name\n"
CRM_HEADER = "\ufeff会员卡号,手机号,姓名,性别,生日,等级,积分,注册时间,消费金额,来源渠道\n"


def login(i: int, openid: str | None = None, phone: str = "", time: str = "2025-01-01 10:00:00") -> str:
    openid = openid if openid is not None else f"oGOOD{i:04d}"
    return f"L{i},{APPID},{openid},,{phone},{time}\n"


def order(i: int, status: str = "paid", amount: str = "10.00", created: str = "2025-01-01 10:00:00",
          phone: str = "", name: str = "") -> str:
    return f"G{i},{status},{amount},{created},{phone},{name}\n"


def crm(i: int, phone: str = "13900000000", name: str = "测试", birthday: str = "1990-01-01",
        spend: str = "10.00") -> str:
    return f"C{i:05d},{phone},{name},女,{birthday},普通会员,1,2025-01-01 10:00:00,{spend},\n"


def logins(*rows: str) -> bytes:
    return (LOGIN_HEADER + "".join(rows)).encode("utf-8")


def orders(*rows: str) -> bytes:
    return (ORDER_HEADER + "".join(rows)).encode("utf-8")


def crms(*rows: str) -> bytes:
    return (CRM_HEADER + "".join(rows)).encode("utf-8")


def _xlsx(rows: list[list]) -> bytes:
    import xlsxwriter

    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False})
    sheet = book.add_worksheet()
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            sheet.write_string(r, c, value) if isinstance(value, str) else sheet.write(r, c, value)
    book.close()
    return buffer.getvalue()


SQLISH = "'); drop table raw.orders; --"
FORMULA = "=cmd|' /C calc'!A0"

# (id, path under landing, bytes, status, good rows, bad rows)
CASES: list[tuple[str, str, bytes, str, int, int]] = [
    # whole files that cannot be read: rejected with a reason, nothing loaded
    ("empty_csv", "mp_logins/empty.csv", b"", "rejected", 0, 0),
    ("empty_xlsx", "crm_members/empty.xlsx", b"", "rejected", 0, 0),
    ("binary_junk_csv", "mp_logins/junk.csv", bytes(range(256)) * 8, "rejected", 0, 0),
    ("binary_junk_xlsx", "crm_members/junk.xlsx", b"PK\x03\x04" + bytes(range(200)), "rejected", 0, 0),
    ("binary_junk_jsonl", "oa_followers/junk.jsonl", b"\x00\xff\xfe\x80" * 100, "rejected", 0, 0),
    ("truncated_gzip", "mp_logins/cut.csv.gz", gzip.compress(logins(login(1), login(2)))[:40], "rejected", 0, 0),
    ("not_gzip", "mp_logins/fake.csv.gz", logins(login(1)), "rejected", 0, 0),
    ("utf16_with_bom", "mp_logins/utf16.csv", logins(login(1)).decode().encode("utf-16"), "loaded", 1, 0),
    ("unknown_header", "mp_logins/other.csv", b"a,b,c\n1,2,3\n", "rejected", 0, 0),
    ("duplicate_headers", "mp_logins/dup.csv",
     b"log_id,appid,openid,openid,unionid,phone,login_time\nL1,wx,o1,o2,,,2025-01-01 10:00:00\n", "rejected", 0, 0),
    ("header_only", "mp_logins/header.csv", logins(), "loaded", 0, 0),
    ("txt_extension", "mp_logins/logins.txt", logins(login(1)), "loaded", 1, 0),
    ("wrong_extension", "mp_logins/logins.pdf", logins(login(1)), "rejected", 0, 0),
    ("json_in_csv_folder", "mp_logins/logins.json", b'{"a": 1}', "rejected", 0, 0),
    ("truncated_json_document", "oa_followers/cut.json", b'{"user_info_list": [{"subscribe": 1, "openid": "o', "rejected", 0, 0),
    ("nul_byte_in_cell", "mp_logins/nul.csv", logins(login(1), login(2)).replace(b"L1", b"L\x001"), "loaded", 1, 1),
    ("zip_bomb_shaped_xlsx", "crm_members/notzip.xlsx", b"PK\x05\x06" + b"\x00" * 18, "rejected", 0, 0),
    # truncated text: the complete rows load, the cut row is quarantined
    ("truncated_csv_last_row", "mp_logins/cut.csv", logins(login(1), login(2))[:-25], "loaded", 1, 1),
    ("truncated_jsonl_last_line", "oa_followers/cut.jsonl",
     b'{"subscribe": 1, "openid": "oA1", "subscribe_time": 1700000000}\n{"subscribe": 1, "openid": "oA2", "subsc',
     "loaded", 1, 1),
    # a byte sequence that is not the folder's encoding: nothing in the file can be trusted to be decoded right
    ("jsonl_junk_line", "oa_followers/mixed.jsonl",
     b'{"subscribe": 1, "openid": "oA1", "subscribe_time": 1700000000}\n\xff\xfe garbage\n'
     b'{"subscribe": 1, "openid": "oA3", "subscribe_time": 1700000000}\n', "rejected", 0, 0),
    ("ragged_rows", "mp_logins/ragged.csv", logins(login(1), "L2,wx,o2\n", login(3)), "loaded", 2, 1),
    # encodings
    ("gbk_in_utf8_folder", "crm_members/gbk.csv",
     (CRM_HEADER.lstrip("\ufeff") + crm(1, name="张三")).encode("gb18030"), "loaded", 1, 0),
    ("bom_and_crlf", "mp_logins/crlf.csv", b"\xef\xbb\xbf" + logins(login(1), login(2)).replace(b"\n", b"\r\n"),
     "loaded", 2, 0),
    ("invalid_utf8_byte_in_cell", "mp_logins/badbyte.csv", logins(login(1)) + b"L2," + APPID.encode()
     + b",o\xff\xfe2,,,2025-01-01 10:00:00\n", "rejected", 0, 0),
    # formula and SQL injection: stored verbatim as text, never executed or interpolated
    ("formula_in_openid", "mp_logins/formula.csv", logins(login(1), login(2, openid=FORMULA.replace(",", ";"))),
     "loaded", 2, 0),
    ("formula_in_name", "orders_generic/formula.csv", orders(order(1, name="=HYPERLINK(\"http://x\")"),
                                                            order(2, name="@SUM(A1:A9)")), "loaded", 2, 0),
    ("formula_in_xlsx_cell", "crm_members/formula.xlsx",
     _xlsx([["会员卡号", "手机号", "姓名", "性别", "生日", "等级", "积分", "注册时间", "消费金额", "来源渠道"],
            ["C1", "13900000001", "=cmd|' /C calc'!A0", "女", "1990-01-01", "普通会员", 1, "2025-01-01 10:00:00",
             10, ""]]), "loaded", 1, 0),
    ("sql_in_name", "orders_generic/sql.csv", orders(order(1, name=SQLISH.replace(",", " ")), order(2)),
     "loaded", 2, 0),
    ("sql_in_order_id", "orders_generic/sqlid.csv", orders(order(1).replace("G1,", "G1'); drop table raw.load_log; --,")),
     "loaded", 1, 0),
    ("sql_in_crm_name", "crm_members/sql.csv", crms(crm(1, name="Robert'); DROP TABLE raw.crm_members;--")),
     "loaded", 1, 0),
    ("sql_in_header", "mp_logins/sqlhead.csv", b"log_id,appid,\"openid\"\"; drop table raw.mp_logins; --\"\n1,2,3\n",
     "rejected", 0, 0),
    ("quote_and_backslash", "orders_generic/quotes.csv", orders(order(1, name='"a"",b\\\'c"')), "loaded", 1, 0),
    # phones: emoji, full-width digits, too short; identifiers are stored as exported, identity judges them
    ("emoji_phone", "mp_logins/emoji.csv", logins(login(1, phone="139📱12345678"), login(2, phone="13912345678")),
     "loaded", 2, 0),
    ("fullwidth_phone", "mp_logins/fullwidth.csv", logins(login(1, phone="１３９１２３４５６７８")), "loaded", 1, 0),
    ("rtl_and_zero_width", "mp_logins/zw.csv", logins(login(1, openid="o\u200bZW\u202eX")), "loaded", 1, 0),
    ("emoji_name", "crm_members/emoji.csv", crms(crm(1, name="🎉小明🎉"), crm(2, name="")), "loaded", 2, 0),
    # dates at the edges: 1900 and 2100 are not order or login times
    ("login_1900", "mp_logins/1900.csv", logins(login(1), login(2, time="1900-01-01 00:00:00")), "loaded", 1, 1),
    ("login_2100", "mp_logins/2100.csv", logins(login(1), login(2, time="2100-01-01 00:00:00")), "loaded", 1, 1),
    ("order_1900", "orders_generic/1900.csv", orders(order(1), order(2, created="1900-01-01 00:00:00")), "loaded", 1, 1),
    ("order_2100", "orders_generic/2100.csv", orders(order(1), order(2, created="2100-12-31 23:59:59")), "loaded", 1, 1),
    ("birthday_1900", "crm_members/b1900.csv", crms(crm(1), crm(2, birthday="1900-01-01")), "loaded", 1, 1),
    ("birthday_2100", "crm_members/b2100.csv", crms(crm(1), crm(2, birthday="2100-01-01")), "loaded", 1, 1),
    ("date_garbage", "mp_logins/dategarbage.csv", logins(login(1), login(2, time="yesterday")), "loaded", 1, 1),
    ("feb_30", "orders_generic/feb30.csv", orders(order(1), order(2, created="2025-02-30 10:00:00")), "loaded", 1, 1),
    # amounts
    ("negative_amount", "orders_generic/neg.csv", orders(order(1), order(2, amount="-50.00")), "loaded", 1, 1),
    ("absurd_amount", "orders_generic/huge.csv", orders(order(1), order(2, amount="99999999999999999999.99")),
     "loaded", 1, 1),
    ("amount_text", "orders_generic/text.csv", orders(order(1), order(2, amount="ten")), "loaded", 1, 1),
    ("amount_nan_inf", "orders_generic/nan.csv", orders(order(1), order(2, amount="NaN"), order(3, amount="inf")),
     "loaded", 1, 2),
    ("amount_scientific", "orders_generic/sci.csv", orders(order(1), order(2, amount="1e30")), "loaded", 1, 1),
    ("negative_spend_crm", "crm_members/negspend.csv", crms(crm(1), crm(2, spend="-1.00")), "loaded", 1, 1),
    ("unknown_status", "orders_generic/status.csv", orders(order(1), order(2, status="hacked")), "loaded", 1, 1),
    # sizes and shapes
    ("huge_field", "mp_logins/hugefield.csv", logins(login(1), login(2, openid="o" + "A" * 200_000)), "loaded", 1, 1),
    ("missing_required", "orders_generic/missing.csv", orders(order(1), ",paid,1.00,2025-01-01 10:00:00,,\n"),
     "loaded", 1, 1),
    # blank lines and all-empty rows are not records: skipped, not quarantined
    ("blank_lines", "mp_logins/blank.csv", logins(login(1), "\n\n", login(2), ",,,,,\n"), "loaded", 2, 0),
    ("json_wrong_types", "oa_followers/types.jsonl",
     b'{"subscribe": 1, "openid": "oA1", "subscribe_time": 1700000000}\n'
     b'{"subscribe": "yes", "openid": ["x"], "subscribe_time": "soon"}\n', "loaded", 1, 1),
    ("json_deep_nesting", "oa_followers/deep.jsonl",
     b'{"subscribe": 1, "openid": "oA1", "subscribe_time": 1700000000}\n' + b"[" * 5000 + b"]" * 5000 + b"\n",
     "loaded", 1, 1),
]
