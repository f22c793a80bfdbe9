"""Tiny hand-made landing files, one per layout. All people, ids and phones are fake.

The files are built here rather than committed so that their bytes are explicit: the Taobao report
really is GBK with CRLF, the CRM export really starts with a UTF-8 BOM, ids really carry tab prefixes.
"""

from __future__ import annotations

import json
from pathlib import Path

OA_APPID = "wxoa0000000demo01"
MP_APPID = "wxmp0000000demo01"
CORP_ID = "wwcorp00000demo01"

OA_RECORDS = [
    {"subscribe": 1, "openid": "oFAKEoa0000000000000000001", "unionid": "oFAKEun0000000000000000001",
     "language": "zh_CN", "subscribe_time": 1700000000, "remark": "", "groupid": 0, "tagid_list": [2, 105],
     "subscribe_scene": "ADD_SCENE_QR_CODE", "qr_scene": 0, "qr_scene_str": "poster_spring"},
    {"subscribe": 0, "openid": "oFAKEoa0000000000000000002"},
    {"subscribe": 1, "openid": "oFAKEoa0000000000000000003", "language": "zh_CN", "subscribe_time": 1704067200,
     "remark": "测试备注", "groupid": 0, "tagid_list": [], "subscribe_scene": "ADD_SCENE_SEARCH",
     "qr_scene": 0, "qr_scene_str": ""},
]

WECOM_RESPONSES = [
    {"errcode": 0, "errmsg": "ok",
     "external_contact": {"external_userid": "wmFAKE000000000000000000001", "name": "测试用户甲", "type": 1,
                          "gender": 1, "unionid": "oFAKEun0000000000000000001"},
     "follow_user": [
         {"userid": "staff_01", "remark": "老客户", "description": "", "createtime": 1700000000,
          "tags": [{"group_name": "来源", "tag_name": "海报", "type": 1}],
          "remark_mobiles": ["13900000001"], "add_way": 1, "state": "poster_spring"},
         {"userid": "staff_02", "remark": "", "description": "", "createtime": 1700003600,
          "tags": [], "remark_mobiles": [], "add_way": 16, "state": "ad_link_01"},
     ]},
    {"errcode": 0, "errmsg": "ok",
     "external_contact": {"external_userid": "wmFAKE000000000000000000002", "name": "测试用户乙", "type": 1,
                          "gender": 2},
     "follow_user": [{"userid": "staff_01", "createtime": 1704067200, "add_way": 2, "state": ""}]},
]

MP_LOGINS = (
    "log_id,appid,openid,unionid,phone,login_time\n"
    f"L0001,{MP_APPID},oFAKEmp0000000000000000001,oFAKEun0000000000000000001,+86 139 0000 0001,2024-01-01 09:00:00\n"
    f"\tL0002,{MP_APPID},oFAKEmp0000000000000000002,,,2024-01-01 09:05:00\n"
    f"L0003,,oFAKEmp0000000000000000003,, 13900000003 ,2024-01-02 23:59:59\n"
)

MP_ORDERS = (
    "order_id,appid,openid,unionid,buyer_phone,receiver_name,receiver_phone,order_status,pay_amount_fen,"
    "refund_amount_fen,created_at,paid_at\n"
    f"MP0001,{MP_APPID},oFAKEmp0000000000000000001,oFAKEun0000000000000000001,13900000001,测试收货人,13900000001,"
    "COMPLETED,1999,0,2024-01-01 10:00:00,2024-01-01 10:01:00\n"
    f'="MP0002",{MP_APPID},oFAKEmp0000000000000000002,,,测试收货人,138****1234,PAID,5,,2024-01-01 11:00:00,2024-01-01 11:00:30\n'
    f"\tMP0003,{MP_APPID},oFAKEmp0000000000000000002,,,测试收货人,##Zm9vYmFyCg==,WAIT_PAY,12000,0,2024-01-02 12:00:00,\n"
    f"MP0004,{MP_APPID},oFAKEmp0000000000000000003,,,测试收货人,$$c2VjcmV0$$,REFUNDED,8800,8800,2024-01-03 08:00:00,2024-01-03 08:00:10\n"
    f"MP0005,{MP_APPID},oFAKEmp0000000000000000003,,,,,PARTIAL_REFUND,10000,2550,2024-01-04 08:00:00,2024-01-04 08:01:00\n"
    f"MP0006,{MP_APPID},oFAKEmp0000000000000000001,,,,,CANCELLED,3000,0,2024-01-05 08:00:00,\n"
    f"MP0007,{MP_APPID},oFAKEmp0000000000000000001,,,,,SHIPPED,123456789,0,2024-01-06 08:00:00,2024-01-06 08:00:01\n"
)

TAOBAO_HEADER = "订单编号,买家会员名,买家实际支付金额,订单状态,收货人姓名,联系手机,订单创建时间,订单付款时间,退款金额"
TAOBAO_ROWS = [
    "TB0001,测试买家一,19.90,交易成功,张测试,138****1234,2024-01-01 10:00:00,2024-01-01 10:01:00,0.00",
    "TB0002,测试买家二,0.00,交易关闭,李测试,13900000002,2024-01-01 11:00:00,,",
    "TB0003,测试买家一,88.00,交易关闭,张测试,138****1234,2024-01-02 10:00:00,2024-01-02 10:01:00,88.00",
    "TB0004,测试买家三,100.00,交易关闭,王测试,,2024-01-03 10:00:00,2024-01-03 10:01:00,30.00",
    "TB0005,测试买家三,5.5,等待买家付款,王测试,,2024-01-04 10:00:00,,",
    '"TB0006",测试买家四,200.00,"买家已付款，等待卖家发货",赵测试,13900000006,2024-01-05 10:00:00,2024-01-05 10:00:05,0.00',
    'TB0007,测试买家四,50.00,"卖家已发货，等待买家确认",赵测试,13900000006,2024-01-06 10:00:00,2024-01-06 10:00:05,0',
    "TB0008,测试买家五,60.00,交易成功,钱测试,13900000008,2024-01-07 10:00:00,2024-01-07 10:00:05,20.00",
]
TAOBAO = "\r\n".join([TAOBAO_HEADER, *TAOBAO_ROWS]) + "\r\n"

CRM_HEADER = "会员卡号,手机号,姓名,性别,生日,等级,积分,注册时间,消费金额,来源渠道"
CRM = "\r\n".join([
    CRM_HEADER,
    "8800000000001,13900000001,测试会员甲,男,1990-01-02,金卡会员,1200,2024-01-01 10:00:00,3000.50,poster_spring",
    "8800000000002,139****0002,测试会员乙,女,,普通会员,0,2024-01-02 10:00:00,0,",
    "8800000000003,##Y2lwaGVy,测试会员丙,未知,1985-12-31,钻石会员,99999,2024-01-03 10:00:00,12345.67,store_qr_sh01",
]) + "\r\n"

REFERRALS = (
    "invite_id,appid,inviter_openid,inviter_unionid,invitee_openid,invitee_unionid,invited_at,campaign\n"
    f"INV0001,{MP_APPID},oFAKEmp0000000000000000001,oFAKEun0000000000000000001,oFAKEmp0000000000000000004,,"
    "2024-01-10 12:00:00,spring_invite\n"
    f"INV0002,{MP_APPID},oFAKEmp0000000000000000001,,oFAKEmp0000000000000000005,oFAKEun0000000000000000005,"
    "2024-01-11 12:00:00,\n"
)

# folder -> (file name, bytes, expected rows)
FILES: dict[str, tuple[str, bytes, int]] = {
    "oa_followers": (
        "user_info_20240131.jsonl",
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in OA_RECORDS).encode("utf-8"),
        3,
    ),
    "mp_logins": ("login_log_202401.csv", MP_LOGINS.encode("utf-8"), 3),
    "wecom_contacts": (
        "external_contacts_20240131.jsonl",
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in WECOM_RESPONSES).encode("utf-8"),
        3,
    ),
    "orders_miniprogram": ("orders_202401.csv", MP_ORDERS.encode("utf-8"), 7),
    "orders_taobao": ("ExportOrderList202401.csv", TAOBAO.encode("gbk"), 8),
    "crm_members": ("members_20240131.csv", b"\xef\xbb\xbf" + CRM.encode("utf-8"), 3),
    "referrals": ("invites_202401.csv", REFERRALS.encode("utf-8"), 2),
}


def write_landing(root: Path, folders: list[str] | None = None) -> Path:
    """Write the fixture files under ``root/<folder>/`` and return ``root``."""
    for folder, (name, data, _) in FILES.items():
        if folders is not None and folder not in folders:
            continue
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(data)
    return root


def put(root: Path, folder: str, name: str, data: bytes | str) -> Path:
    path = root / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path
