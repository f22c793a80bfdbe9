"""A tiny warehouse in the shape of docs/data-contracts.md (raw.* and identity.*), and dbt runs on it.

The rows are hand-written so every expected number in the tests can be checked by reading this file:
six people, each exercising one thing the staging models must get right (re-exports, unfollows,
refunds arriving in a later export, cancelled and unpaid orders, a referral, a person with no dates).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb

from identity.privacy import DEMO_KEY, identity_hmac, mask_phone

PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"

OA = "wxoa0000000demo01"
MP = "wxmp0000000demo01"
CORP = "wwcorp00000demo01"
CRM = "demo_crm"

ALICE = "u_00000000000000a1"
BOB = "u_00000000000000b2"
CAROL = "u_00000000000000c3"
DAVE = "u_00000000000000d4"
ERIN = "u_00000000000000e5"
FRANK = "u_00000000000000f6"

LOAD_COLUMNS = "_source_file VARCHAR, _file_hash VARCHAR, _row_number BIGINT, _layout VARCHAR, _loaded_at TIMESTAMP"

RAW_DDL = {
    "oa_followers": "record_id VARCHAR, appid VARCHAR, openid VARCHAR, unionid VARCHAR, subscribe INTEGER, "
    "subscribed_at TIMESTAMP, subscribe_scene VARCHAR, qr_scene BIGINT, qr_scene_str VARCHAR, "
    "tagid_list VARCHAR, remark VARCHAR",
    "mp_logins": "record_id VARCHAR, log_id VARCHAR, appid VARCHAR, openid VARCHAR, unionid VARCHAR, "
    "phone VARCHAR, logged_in_at TIMESTAMP",
    "wecom_contacts": "record_id VARCHAR, corp_id VARCHAR, external_userid VARCHAR, contact_name VARCHAR, "
    "contact_type INTEGER, gender INTEGER, unionid VARCHAR, staff_userid VARCHAR, added_at TIMESTAMP, "
    "add_way INTEGER, state VARCHAR, remark VARCHAR, remark_mobiles VARCHAR, tags VARCHAR",
    "orders": "record_id VARCHAR, platform VARCHAR, order_id VARCHAR, appid VARCHAR, buyer_openid VARCHAR, "
    "buyer_unionid VARCHAR, buyer_account VARCHAR, buyer_phone VARCHAR, receiver_name VARCHAR, "
    "receiver_phone VARCHAR, receiver_address VARCHAR, receiver_province VARCHAR, order_status VARCHAR, raw_status VARCHAR, paid_amount DECIMAL(18,2), "
    "refunded_amount DECIMAL(18,2), created_at TIMESTAMP, paid_at TIMESTAMP",
    "crm_members": "record_id VARCHAR, crm_name VARCHAR, member_id VARCHAR, phone VARCHAR, member_name VARCHAR, "
    "gender VARCHAR, birthday DATE, declared_tier VARCHAR, points BIGINT, registered_at TIMESTAMP, "
    "lifetime_spend DECIMAL(18,2), source_channel VARCHAR",
    "referrals": "record_id VARCHAR, invite_id VARCHAR, appid VARCHAR, inviter_openid VARCHAR, "
    "inviter_unionid VARCHAR, invitee_openid VARCHAR, invitee_unionid VARCHAR, invited_at TIMESTAMP, "
    "campaign VARCHAR",
}

IDENTITY_DDL = {
    "record_map": "source VARCHAR, record_id VARCHAR, user_id VARCHAR",
    "id_map": "id_type VARCHAR, scope VARCHAR, id_value VARCHAR, user_id VARCHAR",
    "phone_keys": "user_id VARCHAR, phone_masked VARCHAR, phone_hmac VARCHAR",
}

MARCH = datetime(2024, 3, 1, 2, 0)
APRIL = datetime(2024, 4, 1, 2, 0)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def yuan(text: str) -> Decimal:
    return Decimal(text)


# (file, loaded_at, row) per raw row; _row_number is the position within its file.
def _oa(openid, subscribe, unionid=None, subscribed_at=None, qr_scene_str=None):
    return {
        "record_id": f"{OA}/{openid}", "appid": OA, "openid": openid, "unionid": unionid,
        "subscribe": subscribe, "subscribed_at": subscribed_at,
        "subscribe_scene": "ADD_SCENE_QR_CODE" if subscribe else None,
        "qr_scene": 0 if subscribe else None, "qr_scene_str": qr_scene_str,
        "tagid_list": "[2]" if subscribe else None, "remark": "" if subscribe else None,
    }


def _order(platform, order_id, status, paid, refunded, created_at, paid_at, openid=None, account=None,
           address=None, province=None):
    return {
        "record_id": f"{platform}/{order_id}", "platform": platform, "order_id": order_id,
        "appid": MP if platform == "miniprogram_shop" else None, "buyer_openid": openid,
        "buyer_unionid": None, "buyer_account": account, "buyer_phone": "13912345678",
        "receiver_name": "收货人", "receiver_phone": "13712345678", "receiver_address": address,
        "receiver_province": province, "order_status": status,
        "raw_status": status.upper(), "paid_amount": yuan(paid), "refunded_amount": yuan(refunded),
        "created_at": ts(created_at), "paid_at": ts(paid_at) if paid_at else None,
    }


RAW_ROWS: dict[str, list[tuple[str, datetime, dict]]] = {
    "oa_followers": [
        # Alice follows, then a later export says she unfollowed (subscribe = 0, openid only).
        ("oa_followers/2024-03-01.jsonl", MARCH,
         _oa("oAlice", 1, "oUAlice", ts("2024-02-10 09:00:00"), "poster_spring")),
        ("oa_followers/2024-03-01.jsonl", MARCH,
         _oa("oBob", 1, None, ts("2024-02-20 12:00:00"), "store_qr_sh01")),
        ("oa_followers/2024-04-01.jsonl", APRIL, _oa("oAlice", 0)),
        # Frank was only ever seen unfollowed: a person with no date at all.
        ("oa_followers/2024-04-01.jsonl", APRIL, _oa("oFrank", 0)),
    ],
    "mp_logins": [
        ("mp_logins/2024-03.csv", MARCH, {"record_id": "L1", "log_id": "L1", "appid": MP, "openid": "mAlice",
         "unionid": "oUAlice", "phone": "+86 139 1234 5678", "logged_in_at": ts("2024-03-02 08:00:00")}),
        ("mp_logins/2024-03.csv", MARCH, {"record_id": "L2", "log_id": "L2", "appid": MP, "openid": "mCarol",
         "unionid": "", "phone": "", "logged_in_at": ts("2024-03-03 20:00:00")}),
        # Overlapping export repeats L1.
        ("mp_logins/2024-03-to-04.csv", APRIL, {"record_id": "L1", "log_id": "L1", "appid": MP,
         "openid": "mAlice", "unionid": "oUAlice", "phone": "+86 139 1234 5678",
         "logged_in_at": ts("2024-03-02 08:00:00")}),
    ],
    "wecom_contacts": [
        ("wecom_contacts/2024-03.jsonl", MARCH, {"record_id": "wmAlice/staff_01", "corp_id": CORP,
         "external_userid": "wmAlice", "contact_name": "爱丽丝", "contact_type": 1, "gender": 2,
         "unionid": "oUAlice", "staff_userid": "staff_01", "added_at": ts("2024-02-15 10:00:00"), "add_way": 1,
         "state": "poster_spring", "remark": "", "remark_mobiles": '["13912345678"]', "tags": "[]"}),
        # Re-exported after the corp lost its developer-id binding: no unionid this time.
        ("wecom_contacts/2024-04.jsonl", APRIL, {"record_id": "wmAlice/staff_01", "corp_id": CORP,
         "external_userid": "wmAlice", "contact_name": "爱丽丝", "contact_type": 1, "gender": 2,
         "unionid": None, "staff_userid": "staff_01", "added_at": ts("2024-02-15 10:00:00"), "add_way": 1,
         "state": "poster_spring", "remark": "VIP", "remark_mobiles": "[]", "tags": "[]"}),
        ("wecom_contacts/2024-04.jsonl", APRIL, {"record_id": "wmDave/staff_02", "corp_id": CORP,
         "external_userid": "wmDave", "contact_name": "戴夫", "contact_type": 1, "gender": 1,
         "unionid": None, "staff_userid": "staff_02", "added_at": ts("2024-03-12 21:00:00"), "add_way": 16,
         "state": "live_0312", "remark": "", "remark_mobiles": "[]", "tags": "[]"}),
    ],
    "orders": [
        # MP001: paid in March, the April export says refunded in full.
        ("orders_miniprogram/2024-03.csv", MARCH,
         _order("miniprogram_shop", "MP001", "paid", "100.00", "0", "2024-03-05 09:58:00", "2024-03-05 10:00:00",
                openid="mAlice", address="浙江省杭州市西区测试路1号")),
        ("orders_miniprogram/2024-03.csv", MARCH,
         _order("miniprogram_shop", "MP002", "partially_refunded", "59.90", "20.00", "2024-03-08 11:00:00",
                "2024-03-08 11:01:00", openid="mAlice", address="上海市浦东区示例街2号")),
        ("orders_miniprogram/2024-03.csv", MARCH,
         _order("miniprogram_shop", "MP003", "unpaid", "50.00", "0", "2024-03-09 12:00:00", None,
                openid="mCarol", address="浙江省杭州市西区测试路3号")),
        ("orders_miniprogram/2024-04.csv", APRIL,
         _order("miniprogram_shop", "MP001", "refunded", "100.00", "100.00", "2024-03-05 09:58:00",
                "2024-03-05 10:00:00", openid="mAlice", address="浙江省杭州市西区测试路1号")),
        # MP004: two files loaded in the same run. The older file has it further down (row 2), so
        # only the file-name tie-break, not the row number, picks the newer export.
        ("orders_miniprogram/2024-04-15.csv", APRIL,
         _order("miniprogram_shop", "5001", "paid", "10.00", "0", "2024-03-21 09:00:00", "2024-03-21 09:01:00",
                openid="mErin", province="火星")),
        ("orders_miniprogram/2024-04-15.csv", APRIL,
         _order("miniprogram_shop", "MP004", "paid", "66.00", "0", "2024-04-20 10:00:00",
                "2024-04-20 10:05:00", openid="mDave")),
        ("orders_miniprogram/2024-04-30.csv", APRIL,
         _order("miniprogram_shop", "MP004", "refunded", "66.00", "66.00", "2024-04-20 10:00:00",
                "2024-04-20 10:05:00", openid="mDave")),
        # The same order number on two platforms is two orders (5001 above and below).
        ("orders_taobao/2024-03.csv", MARCH,
         _order("taobao", "TB001", "cancelled", "88.00", "0", "2024-02-21 15:00:00", None, account="bob_tb")),
        ("orders_taobao/2024-03.csv", MARCH,
         _order("taobao", "TB002", "paid", "200.00", "0", "2024-02-25 10:00:00", "2024-02-25 10:02:00",
                account="carol_tb", address="广西壮族自治区 南宁市 东区 测试路4号")),
        ("orders_taobao/2024-03.csv", MARCH,
         _order("taobao", "5001", "paid", "300.00", "0", "2024-02-28 18:00:00", "2024-02-28 18:30:00",
                account="dave_tb", address="四川省 成都市 北区 测试路5号")),
    ],
    "crm_members": [
        ("crm_members/2024-03.csv", MARCH, {"record_id": "M001", "crm_name": CRM, "member_id": "M001",
         "phone": "13912345678", "member_name": "爱丽丝", "gender": "female", "birthday": date(1990, 5, 1),
         "declared_tier": "普通会员", "points": 100, "registered_at": ts("2024-01-15 09:00:00"),
         "lifetime_spend": yuan("100.00"), "source_channel": "parcel_card"}),
        ("crm_members/2024-04.csv", APRIL, {"record_id": "M001", "crm_name": CRM, "member_id": "M001",
         "phone": "13912345678", "member_name": "爱丽丝", "gender": "female", "birthday": date(1990, 5, 1),
         "declared_tier": "银卡会员", "points": 260, "registered_at": ts("2024-01-15 09:00:00"),
         "lifetime_spend": yuan("159.90"), "source_channel": "parcel_card"}),
    ],
    "referrals": [
        ("referrals/2024-03.csv", MARCH, {"record_id": "INV1", "invite_id": "INV1", "appid": MP,
         "inviter_openid": "mAlice", "inviter_unionid": "oUAlice", "invitee_openid": "mErin",
         "invitee_unionid": "", "invited_at": ts("2024-03-20 19:00:00"), "campaign": "spring_fission"}),
    ],
}

RECORD_MAP = [
    ("oa_followers", f"{OA}/oAlice", ALICE),
    ("oa_followers", f"{OA}/oBob", BOB),
    ("oa_followers", f"{OA}/oFrank", FRANK),
    ("mp_logins", "L1", ALICE),
    ("mp_logins", "L2", CAROL),
    ("wecom_contacts", "wmAlice/staff_01", ALICE),
    ("wecom_contacts", "wmDave/staff_02", DAVE),
    ("orders", "miniprogram_shop/MP001", ALICE),
    ("orders", "miniprogram_shop/MP002", ALICE),
    ("orders", "miniprogram_shop/MP003", CAROL),
    ("orders", "miniprogram_shop/MP004", DAVE),
    ("orders", "miniprogram_shop/5001", ERIN),
    ("orders", "taobao/TB001", BOB),
    ("orders", "taobao/TB002", CAROL),
    ("orders", "taobao/5001", DAVE),
    ("crm_members", "M001", ALICE),
    ("referrals", "INV1/inviter", ALICE),
    ("referrals", "INV1/invitee", ERIN),
]

ID_MAP = [
    ("openid", OA, "oAlice", ALICE),
    ("openid", MP, "mAlice", ALICE),
    ("unionid", "", "oUAlice", ALICE),
    ("phone", "", "13912345678", ALICE),
    ("external_userid", CORP, "wmAlice", ALICE),
    ("member_id", CRM, "M001", ALICE),
    ("openid", OA, "oBob", BOB),
    ("buyer_account", "taobao", "bob_tb", BOB),
    ("openid", MP, "mCarol", CAROL),
    ("buyer_account", "taobao", "carol_tb", CAROL),
    ("external_userid", CORP, "wmDave", DAVE),
    ("openid", MP, "mDave", DAVE),
    ("buyer_account", "taobao", "dave_tb", DAVE),
    ("openid", MP, "mErin", ERIN),
    ("openid", OA, "oFrank", FRANK),
]


def build_warehouse(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema raw")
        con.execute("create schema identity")
        for table, ddl in RAW_DDL.items():
            con.execute(f"create table raw.{table} ({ddl}, {LOAD_COLUMNS})")
            columns = [c.split()[0] for c in ddl.split(", ")]
            row_in_file: dict[str, int] = {}
            for source_file, loaded_at, row in RAW_ROWS[table]:
                assert set(row) == set(columns), (table, set(row) ^ set(columns))
                row_in_file[source_file] = row_in_file.get(source_file, 0) + 1
                values = [row[c] for c in columns] + [
                    source_file, f"sha256-of-{source_file}", row_in_file[source_file], "test", loaded_at,
                ]
                con.execute(f"insert into raw.{table} values ({', '.join('?' * len(values))})", values)
        for table, ddl in IDENTITY_DDL.items():
            con.execute(f"create table identity.{table} ({ddl})")
        con.executemany("insert into identity.record_map values (?, ?, ?)", RECORD_MAP)
        con.executemany("insert into identity.id_map values (?, ?, ?, ?)", ID_MAP)
        # as the identity asset writes them (pipelines/defs/identity.py phone_keys), with the public demo key
        con.executemany(
            "insert into identity.phone_keys values (?, ?, ?)",
            [(user, mask_phone(value), identity_hmac(DEMO_KEY.encode(), "phone", "", value))
             for id_type, _, value, user in ID_MAP if id_type == "phone"],
        )
    finally:
        con.close()


@dataclass
class DbtRun:
    database: Path
    result: object  # dbt.cli.main.dbtRunnerResult

    # Not read_only: dbt-duckdb keeps its connection to the file open in this process after the
    # run, and DuckDB refuses a second in-process connection with a different configuration.
    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        con = duckdb.connect(str(self.database))
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def rows_by_key(self, relation: str, key: str) -> dict[str, dict]:
        con = duckdb.connect(str(self.database))
        try:
            cursor = con.execute(f"select * from {relation}")
            names = [d[0] for d in cursor.description]
            return {r[names.index(key)]: dict(zip(names, r)) for r in cursor.fetchall()}
        finally:
            con.close()


def run_dbt(args: list[str], database: Path, work_dir: Path):
    """Run dbt in-process the way the pipeline does, with target/ and logs/ kept out of the repo."""
    from dbt.cli.main import dbtRunner

    previous = os.environ.get("ONEID_DATABASE")
    os.environ["ONEID_DATABASE"] = str(database)
    try:
        return dbtRunner().invoke(
            [
                *args,
                "--project-dir", str(PROJECT_DIR),
                "--profiles-dir", str(PROJECT_DIR),
                "--target-path", str(work_dir / "target"),
                "--log-path", str(work_dir / "logs"),
                "--no-use-colors",
                "--quiet",
            ]
        )
    finally:
        if previous is None:
            os.environ.pop("ONEID_DATABASE", None)
        else:
            os.environ["ONEID_DATABASE"] = previous


@dataclass
class DbtParse:
    manifest: object  # dbt.contracts.graph.manifest.Manifest
    manifest_json: Path
