"""Independent readers of a generated sample folder, written from docs/data-contracts.md, not from the generator."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

OA_APPID = "wxoa0000000demo01"
MP_APPID = "wxmp0000000demo01"

MP_ORDER_HEADER = ("order_id,appid,openid,unionid,buyer_phone,receiver_name,receiver_phone,receiver_address,order_status,"
                   "pay_amount_fen,refund_amount_fen,created_at,paid_at").split(",")
MP_LOGIN_HEADER = "log_id,appid,openid,unionid,phone,login_time".split(",")
TB_HEADER = "订单编号,买家会员名,买家实际支付金额,订单状态,收货人姓名,联系手机,收货地址,订单创建时间,订单付款时间,退款金额".split(",")
CRM_HEADER = "会员卡号,手机号,姓名,性别,生日,等级,积分,注册时间,消费金额,来源渠道".split(",")
REFERRAL_HEADER = ("invite_id,appid,inviter_openid,inviter_unionid,invitee_openid,invitee_unionid,invited_at,"
                   "campaign").split(",")

JUNK = {"13800138000", "00000000000", "12345678901", "11111111111", "13333333333", "18888888888", "null", "-"}
MOBILE = re.compile(r"1[3-9]\d{9}")
MASKED = re.compile(r"1\d{2}\*{4}\d{4}|1\*{6}\d{4}")
CIPHER = re.compile(r"(##|\$\$)\S+")


def normalize_phone(value: str) -> str | None:
    """The 11-digit mobile, or None when the value is unusable as a key (masked, cipher, junk, empty)."""
    v = re.sub(r"[\s-]", "", value)
    if v.startswith("+86"):
        v = v[3:]
    elif v.startswith("86") and len(v) == 13:
        v = v[2:]
    if not MOBILE.fullmatch(v) or v in JUNK or len(set(v)) == 1 or v.startswith("166"):
        return None
    return v


def is_junk(value: str) -> bool:
    v = re.sub(r"[\s-]", "", value) if value != "-" else value
    return value in JUNK or (v.isdigit() and len(set(v)) == 1) or (v.startswith("166") and len(v) == 11)


def is_formatted(value: str) -> bool:
    return bool(value) and not MOBILE.fullmatch(value) and normalize_phone(value) is not None


@dataclass
class Landing:
    root: Path
    oa: list[tuple[str, dict]] = field(default_factory=list)           # (file, record)
    wecom: list[dict] = field(default_factory=list)
    mp_logins: list[dict] = field(default_factory=list)
    mp_orders: list[tuple[str, dict]] = field(default_factory=list)
    tb_orders: list[tuple[str, dict]] = field(default_factory=list)
    crm: list[dict] = field(default_factory=list)
    referrals: list[dict] = field(default_factory=list)

    def files(self, folder: str) -> list[Path]:
        return sorted((self.root / "landing" / folder).iterdir())

    def record_ids(self) -> set[tuple[str, str]]:
        """(source, record_id) of every row, by the rules of data-contracts.md section 2."""
        ids = set()
        for _, r in self.oa:
            ids.add(("oa_followers", f"{OA_APPID}/{r['openid']}"))
        for r in self.mp_logins:
            ids.add(("mp_logins", r["log_id"]))
        for r in self.wecom:
            for fu in r["follow_user"]:
                ids.add(("wecom_contacts", f"{r['external_contact']['external_userid']}/{fu['userid']}"))
        for _, r in self.mp_orders:
            ids.add(("orders", f"miniprogram_shop/{r['order_id']}"))
        for _, r in self.tb_orders:
            ids.add(("orders", f"taobao/{r['订单编号']}"))
        for r in self.crm:
            ids.add(("crm_members", r["会员卡号"]))
        for r in self.referrals:
            ids.add(("referrals", f"{r['invite_id']}/inviter"))
            ids.add(("referrals", f"{r['invite_id']}/invitee"))
        return ids


def _csv(path: Path, encoding: str, header: list[str]) -> list[dict]:
    text = path.read_bytes().decode(encoding)
    reader = csv.reader(io.StringIO(text, newline=""))
    got = next(reader)
    assert got == header, f"{path}: header {got}"
    rows = [dict(zip(header, row)) for row in reader]
    assert all(len(r) == len(header) for r in rows)
    return rows


def read_landing(root: Path) -> Landing:
    L = Landing(Path(root))
    for p in L.files("oa_followers"):
        assert p.suffix == ".jsonl"
        for line in p.read_text(encoding="utf-8").splitlines():
            L.oa.append((p.name, json.loads(line)))
    for p in L.files("wecom_contacts"):
        L.wecom.extend(json.loads(line) for line in p.read_text(encoding="utf-8").splitlines())
    for p in L.files("mp_logins"):
        L.mp_logins.extend(_csv(p, "utf-8", MP_LOGIN_HEADER))
    for p in L.files("orders_miniprogram"):
        L.mp_orders.extend((p.name, r) for r in _csv(p, "utf-8", MP_ORDER_HEADER))
    for p in L.files("orders_taobao"):
        L.tb_orders.extend((p.name, r) for r in _csv(p, "gbk", TB_HEADER))
    for p in L.files("crm_members"):
        L.crm.extend(_csv(p, "utf-8-sig", CRM_HEADER))
    for p in L.files("referrals"):
        L.referrals.extend(_csv(p, "utf-8", REFERRAL_HEADER))
    return L


def read_truth(root: Path) -> dict[tuple[str, str], str]:
    with gzip.open(Path(root) / "truth" / "records.csv.gz", "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["source", "record_id", "person_id"]
        rows = list(reader)
    truth = {(s, r): p for s, r, p in rows}
    assert len(truth) == len(rows), "truth has duplicate (source, record_id)"
    return truth


def read_persons(root: Path) -> dict[str, dict]:
    with gzip.open(Path(root) / "truth" / "persons.csv.gz", "rt", encoding="utf-8", newline="") as f:
        return {r["person_id"]: r for r in csv.DictReader(f)}


def assert_rate(hits: int, total: int, p: float, what: str, sigmas: float = 4.5) -> None:
    """Binomial tolerance: a correct generator fails this about once in 150,000 runs per check."""
    import math

    assert total > 0, f"{what}: nothing to measure"
    sd = math.sqrt(total * p * (1 - p))
    expected = total * p
    assert abs(hits - expected) <= sigmas * sd + 2, (
        f"{what}: {hits}/{total} = {hits / total:.4f}, expected {p} (+-{sigmas * sd / total:.4f})")
