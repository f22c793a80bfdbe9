"""The landing files follow docs/data-contracts.md section 1, and the truth covers every record they hold."""

import json
import re
from collections import defaultdict
from datetime import datetime

import pytest
from samplegen_landing import (MP_APPID, OA_APPID, read_landing, read_persons, read_truth)

OPENID = re.compile(r"o[A-Za-z0-9_-]{27}")
EXTERNAL = re.compile(r"w[mo][A-Za-z0-9_-]{30}")
SCENES = {"ADD_SCENE_SEARCH", "ADD_SCENE_ACCOUNT_MIGRATION", "ADD_SCENE_PROFILE_CARD", "ADD_SCENE_QR_CODE",
          "ADD_SCENE_PROFILE_LINK", "ADD_SCENE_PROFILE_ITEM", "ADD_SCENE_PAID", "ADD_SCENE_WECHAT_ADVERTISEMENT",
          "ADD_SCENE_REPRINT", "ADD_SCENE_LIVESTREAM", "ADD_SCENE_CHANNELS", "ADD_SCENE_WXA", "ADD_SCENE_OTHERS"}
MP_STATUSES = {"WAIT_PAY", "PAID", "SHIPPED", "COMPLETED", "REFUNDED", "PARTIAL_REFUND", "CANCELLED"}
TB_STATUSES = {"等待买家付款", "买家已付款，等待卖家发货", "卖家已发货，等待买家确认", "交易成功", "交易关闭"}
CHINA = 8 * 3600


def _t(s: str) -> datetime | None:
    try:
        return datetime.strptime(s, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


@pytest.fixture(scope="module")
def data(sample5k):
    root, manifest = sample5k
    return root, manifest, read_landing(root), read_truth(root), read_persons(root)


def test_folders_and_files(data):
    root, manifest, *_ = data
    folders = sorted(p.name for p in (root / "landing").iterdir())
    assert folders == ["crm_members", "mp_logins", "oa_followers", "orders_miniprogram", "orders_taobao",
                       "referrals", "wecom_contacts"]
    for rel, info in manifest["files"].items():
        assert (root / rel).stat().st_size == info["bytes"]
    assert len(list((root / "landing" / "oa_followers").glob("*.jsonl"))) == 2


def test_taobao_is_gbk_not_utf8(data):
    root = data[0]
    for p in (root / "landing" / "orders_taobao").iterdir():
        raw = p.read_bytes()
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        assert raw.decode("gbk").startswith("订单编号,买家会员名,")


def test_crm_has_bom(data):
    root = data[0]
    for p in (root / "landing" / "crm_members").iterdir():
        raw = p.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf" + "会员卡号".encode())


def test_other_csv_are_plain_utf8(data):
    root = data[0]
    for folder in ("mp_logins", "orders_miniprogram", "referrals"):
        for p in (root / "landing" / folder).iterdir():
            raw = p.read_bytes()
            assert not raw.startswith(b"\xef\xbb\xbf")
            raw.decode("utf-8")


def test_every_record_is_in_the_truth(data):
    _, _, L, truth, persons = data
    ids = L.record_ids()
    assert ids == set(truth), (len(ids - set(truth)), len(set(truth) - ids))
    assert set(truth.values()) == set(persons)  # every person left at least one record
    counts = defaultdict(int)
    for source, _ in truth:
        counts[source] += 1
    assert set(counts) == {"oa_followers", "mp_logins", "wecom_contacts", "orders", "crm_members", "referrals"}


def test_manifest_counts(data):
    root, manifest, L, truth, persons = data
    rows = {rel.split("/")[1] if rel.startswith("landing") else rel: 0 for rel in manifest["files"]}
    for rel, info in manifest["files"].items():
        key = rel.split("/")[1] if rel.startswith("landing") else rel
        rows[key] += info["rows"]
    assert rows["oa_followers"] == len(L.oa)
    assert rows["mp_logins"] == len(L.mp_logins)
    assert rows["wecom_contacts"] == len(L.wecom)
    assert rows["orders_miniprogram"] == len(L.mp_orders)
    assert rows["orders_taobao"] == len(L.tb_orders)
    assert rows["crm_members"] == len(L.crm)
    assert rows["referrals"] == len(L.referrals)
    assert rows["truth/records.csv.gz"] == len(truth)
    assert rows["truth/persons.csv.gz"] == len(persons) == manifest["users"] == 5000
    assert manifest["seed"] == 7 and manifest["generator"] == "samplegen"


def test_oa_followers_shape(data):
    _, _, L, truth, _ = data
    for _, r in L.oa:
        assert OPENID.fullmatch(r["openid"])
        if r["subscribe"] == 0:
            assert set(r) == {"subscribe", "openid"}
            continue
        keys = ["subscribe", "openid", "unionid", "language", "subscribe_time", "remark", "groupid", "tagid_list",
                "subscribe_scene", "qr_scene", "qr_scene_str"]
        assert list(r) == [k for k in keys if k in r] and set(keys) - set(r) <= {"unionid"}
        assert r["subscribe_scene"] in SCENES
        assert isinstance(r["subscribe_time"], int) and isinstance(r["tagid_list"], list)
        assert (r["qr_scene_str"] != "") <= (r["subscribe_scene"] == "ADD_SCENE_QR_CODE")
        if "unionid" in r:
            assert OPENID.fullmatch(r["unionid"])


def test_ids_scoped_and_consistent(data):
    _, _, L, truth, _ = data
    person_unionid = defaultdict(set)
    oa_openids = set()
    for _, r in L.oa:
        oa_openids.add(r["openid"])
        if "unionid" in r:
            person_unionid[truth["oa_followers", f"{OA_APPID}/{r['openid']}"]].add(r["unionid"])
    mp_openids = set()
    for r in L.mp_logins:
        assert r["appid"] == MP_APPID
        if r["openid"]:
            assert OPENID.fullmatch(r["openid"])
            mp_openids.add(r["openid"])
        if r["unionid"]:
            person_unionid[truth["mp_logins", r["log_id"]]].add(r["unionid"])
    for r in L.wecom:
        c = r["external_contact"]
        assert EXTERNAL.fullmatch(c["external_userid"])
        assert (c["type"] == 2) == c["external_userid"].startswith("wo")
        if "unionid" in c:
            assert c["type"] == 1
            person_unionid[truth["wecom_contacts", f"{c['external_userid']}/{r['follow_user'][0]['userid']}"]].add(
                c["unionid"])
    assert not oa_openids & mp_openids  # openids are per app
    assert all(len(u) == 1 for u in person_unionid.values())  # one unionid per person, in every app
    assert len({next(iter(u)) for u in person_unionid.values()}) == len(person_unionid)
    # one openid per person per app
    mp_person = defaultdict(set)
    for r in L.mp_logins:
        if r["openid"]:
            mp_person[r["openid"]].add(truth["mp_logins", r["log_id"]])
    assert all(len(p) == 1 for p in mp_person.values())


def test_wecom_shape(data):
    _, _, L, _, _ = data
    two = 0
    for r in L.wecom:
        assert r["errcode"] == 0 and r["errmsg"] == "ok"
        assert set(r["external_contact"]) - {"unionid"} == {"external_userid", "name", "type", "gender"}
        staff = [fu["userid"] for fu in r["follow_user"]]
        assert len(staff) == len(set(staff)) >= 1
        two += len(staff) == 2
        for fu in r["follow_user"]:
            assert set(fu) - {"state"} == {"userid", "remark", "description", "createtime", "tags",
                                           "remark_mobiles", "add_way"}
            assert fu["add_way"] in (1, 2, 3, 4, 16)
            assert ("state" in fu) == (fu["add_way"] in (1, 16))
    assert two > 0


def test_orders_shape(data):
    _, manifest, L, _, _ = data
    lo, hi = datetime(2025, 1, 1), datetime(2026, 1, 1)
    for _, r in L.mp_orders:
        assert r["appid"] == MP_APPID and r["order_status"] in MP_STATUSES
        assert re.fullmatch(r"20\d{14}", r["order_id"])
        t = _t(r["created_at"])
        if t is None or not r["pay_amount_fen"].isdigit():
            continue  # a malformed row, measured in the noise tests
        assert lo <= t < hi
        unpaid = r["order_status"] in ("WAIT_PAY", "CANCELLED")
        assert (r["paid_at"] == "") == unpaid
        pay, refund = int(r["pay_amount_fen"]), int(r["refund_amount_fen"])
        assert 990 <= pay <= 300_000
        if r["order_status"] == "REFUNDED":
            assert refund == pay
        elif r["order_status"] == "PARTIAL_REFUND":
            assert 0 < refund < pay
        else:
            assert refund == 0
    for _, r in L.tb_orders:
        assert re.fullmatch(r"\d{19}", r["订单编号"]) and r["订单状态"] in TB_STATUSES
        if _t(r["订单创建时间"]) is None or not re.fullmatch(r"\d+\.\d\d", r["买家实际支付金额"]):
            continue
        paid = r["订单付款时间"] != ""
        assert paid == (r["订单状态"] != "等待买家付款" and not (r["订单状态"] == "交易关闭" and r["退款金额"] == "0.00"))
        if r["订单状态"] == "交易关闭" and paid:
            assert r["退款金额"] == r["买家实际支付金额"]
        if not paid:
            assert r["买家实际支付金额"] == "0.00"


def test_crm_shape(data):
    _, _, L, _, _ = data
    for r in L.crm:
        assert r["性别"] in ("男", "女", "未知")
        assert r["等级"] in ("普通会员", "银卡会员", "金卡会员", "钻石会员")
        assert r["积分"].isdigit() and r["会员卡号"].isdigit()


def test_referrals_follow_the_inviters_channel(data):
    _, _, L, truth, persons = data
    assert L.referrals
    for r in L.referrals:
        assert r["appid"] == MP_APPID
        inviter = persons[truth["referrals", f"{r['invite_id']}/inviter"]]
        invitee = persons[truth["referrals", f"{r['invite_id']}/invitee"]]
        assert invitee["inviter"] == inviter["person_id"]
        assert invitee["channel"] == inviter["channel"]
        assert invitee["entry"] == "referral"
        assert r["invited_at"] == invitee["joined_at"] > inviter["joined_at"]
        assert OPENID.fullmatch(r["inviter_openid"]) and OPENID.fullmatch(r["invitee_openid"])


def test_first_touch_carries_the_channel(data):
    """The record written at a person's first touch holds their channel code, and no code is seen earlier."""
    _, _, L, truth, persons = data
    coded = defaultdict(list)  # person -> [(unix time, code, record)]
    for fname, r in L.oa:
        if r["subscribe"] == 1 and r["qr_scene_str"] and fname.endswith("20251231.jsonl"):
            rid = f"oa_followers/{OA_APPID}/{r['openid']}"
            coded[truth["oa_followers", rid.split("/", 1)[1]]].append((r["subscribe_time"], r["qr_scene_str"], rid))
    for r in L.wecom:
        ext = r["external_contact"]["external_userid"]
        for fu in r["follow_user"]:
            if "state" in fu:
                rid = f"{ext}/{fu['userid']}"
                coded[truth["wecom_contacts", rid]].append((fu["createtime"], fu["state"], "wecom_contacts/" + rid))
    broken = set()  # a malformed registration time hides when the member joined
    for r in L.crm:
        t = _t(r["注册时间"])
        if r["来源渠道"] and t:
            coded[truth["crm_members", r["会员卡号"]]].append(
                (_unix(t), r["来源渠道"], "crm_members/" + r["会员卡号"]))
        elif t is None:
            broken.add(truth["crm_members", r["会员卡号"]])
    checked = 0
    for pid, p in persons.items():
        source, record_id = p["entry_record"].split("/", 1)
        assert truth[source, record_id] == pid
        if pid in broken:
            continue
        if p["entry"] in ("oa_qr", "wecom", "crm") and p["channel"]:
            first = min(coded[pid])
            assert first[1] == p["channel"], (pid, first, p)
            assert any(rec == p["entry_record"] for _, _, rec in coded[pid])
            checked += 1
        elif p["entry"] == "referral":
            joined = _unix(_t(p["joined_at"]))
            assert all(t >= joined for t, _, _ in coded[pid])
    assert checked > 2000


def _unix(t: datetime) -> int:
    return int((t - datetime(1970, 1, 1)).total_seconds()) - CHINA


def test_json_lines_are_compact_utf8(data):
    root = data[0]
    for folder in ("oa_followers", "wecom_contacts"):
        for p in (root / "landing" / folder).iterdir():
            text = p.read_text(encoding="utf-8")
            assert text.endswith("\n") and "\r" not in text
            line = text.split("\n", 1)[0]
            assert json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":")) == line
