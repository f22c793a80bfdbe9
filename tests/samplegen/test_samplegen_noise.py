"""Each noise rate shows up in the files at the rate it was asked for (5,000 persons, binomial tolerance)."""

import re
from collections import defaultdict
from datetime import datetime

import pytest
from samplegen_landing import (CIPHER, MASKED, assert_rate, is_formatted, is_junk, normalize_phone, read_landing,
                               read_persons, read_truth)

from samplegen import NoiseRates

N = NoiseRates()
MAIN = "20251231"


@pytest.fixture(scope="module")
def data(sample5k):
    root, _ = sample5k
    return read_landing(root), read_truth(root), read_persons(root)


def _main(rows):
    return [r for f, r in rows if MAIN in f]


def _store_rows(L, truth, persons):
    """CRM rows typed in by store staff (the other members' numbers come from WeChat's phone authorization)."""
    return [r for r in L.crm if persons[truth["crm_members", r["会员卡号"]]]["crm_registration"] == "store"]


def _typed_phones(L, truth, persons):
    """(field, value) of every phone value that may be junk, masked or ciphertext."""
    out = []
    out += [("receiver", r["receiver_phone"]) for r in _main(L.mp_orders)]
    out += [("receiver", r["联系手机"]) for r in _main(L.tb_orders)]
    out += [("crm", r["手机号"]) for r in _store_rows(L, truth, persons)]
    out += [("wecom", m) for r in L.wecom for fu in r["follow_user"] for m in fu["remark_mobiles"]]
    return out


def test_two_phones(data):
    _, _, persons = data
    two = [p for p in persons.values() if p["phone2"]]
    assert_rate(len(two), len(persons), N.two_phones, "two phones")
    L = data[0]
    seen = {normalize_phone(v) for _, v in _typed_phones(*data)}
    assert sum(p["phone2"] in seen for p in two) > len(two) * 0.2  # second phones are really used


def test_family_phone(data):
    L, truth, persons = data
    fam = [p for p in persons.values() if p["shares_phone_of"]]
    assert_rate(len(fam), len(persons), N.family_phone, "family phone")
    for p in fam:
        assert p["phone1"] == persons[p["shares_phone_of"]]["phone1"]
    # the shared number reaches the files from both people
    users = defaultdict(set)
    for r in L.mp_logins:
        if normalize_phone(r["phone"]):
            users[normalize_phone(r["phone"])].add(truth["mp_logins", r["log_id"]])
    for r in L.crm:
        if normalize_phone(r["手机号"]):
            users[normalize_phone(r["手机号"])].add(truth["crm_members", r["会员卡号"]])
    assert sum(len(u) == 2 for u in users.values()) >= 5


def _gifts(L, truth, persons):
    """(usable receiver phones, gifts among them, gifts to another customer, outsiders' numbers)."""
    owners = defaultdict(set)
    for p in persons.values():
        for ph in (p["phone1"], p["phone2"]):
            if ph:
                owners[ph].add(p["person_id"])
    usable = gifts = to_customers = 0
    outsiders = []
    orders = [(f"miniprogram_shop/{r['order_id']}", r["receiver_phone"]) for r in _main(L.mp_orders)]
    orders += [(f"taobao/{r['订单编号']}", r["联系手机"]) for r in _main(L.tb_orders)]
    for rid, phone in orders:
        ph = normalize_phone(phone)
        if ph is None:
            continue
        usable += 1
        if truth["orders", rid] not in owners[ph]:
            gifts += 1
            to_customers += bool(owners[ph])
            if not owners[ph]:
                outsiders.append(ph)  # someone outside the brand's customers
    return usable, gifts, to_customers, outsiders


def test_gift_orders(data):
    usable, gifts, to_customers, outsiders = _gifts(*data)
    assert_rate(gifts, usable, N.gift_order, "gift orders", sigmas=5)
    assert_rate(to_customers, gifts, N.gift_customer, "gifts to another customer", sigmas=5)
    assert len(set(outsiders)) == len(outsiders)  # an outsider's number is on their one order only


@pytest.fixture(scope="module")
def hard(tmp_path_factory):
    """A hard brand for benches: the earlier defaults of these rates, and every gift to another customer."""
    from samplegen import generate
    root = tmp_path_factory.mktemp("hard")
    noise = NoiseRates(no_unionid=0.15, second_card=0.30, gift_customer=1.0, two_phones=0.3)
    generate(root, users=3000, seed=8, noise=noise)
    return noise, read_landing(root), read_truth(root), read_persons(root)


def test_hard_brand_rates(hard):
    noise, L, truth, persons = hard
    _, gifts, to_customers, _ = _gifts(L, truth, persons)
    assert gifts > 50 and to_customers == gifts
    assert_rate(*_second_cards(L, truth, persons), noise.second_card, "second CRM card")
    followers = [r for f, r in L.oa if MAIN in f and r["subscribe"] == 1]
    assert_rate(sum("unionid" not in r for r in followers), len(followers), noise.no_unionid, "OA without unionid")


def test_masked_cipher_junk(data):
    L, truth, persons = data
    typed = _typed_phones(L, truth, persons)
    maskable = [v for f, v in typed if f in ("receiver", "crm")]
    assert_rate(sum(bool(MASKED.fullmatch(v)) for v in maskable), len(maskable), N.masked_phone, "masked")
    receivers = [v for f, v in typed if f == "receiver"]
    assert_rate(sum(bool(CIPHER.fullmatch(v)) for v in receivers), len(receivers), N.cipher_phone, "cipher")
    assert_rate(sum(is_junk(v) for _, v in typed), len(typed), N.junk_phone, "junk")
    assert {"13800138000", "00000000000", "12345678901"} <= {v for _, v in typed}
    # the staff numbers typed into many contacts: the same value on many records
    staff = [v for _, v in typed if v.startswith("166")]
    assert staff and max(staff.count(s) for s in set(staff)) >= 10
    # no junk, masked or cipher value where the platform hands the number over itself
    for r in L.mp_logins:
        assert r["phone"] == "" or normalize_phone(r["phone"])
    card_rows = [r for r in L.crm if persons[truth["crm_members", r["会员卡号"]]]["crm_registration"] == "mp_card"]
    assert card_rows and all(normalize_phone(r["手机号"]) for r in card_rows)


def test_phone_formats(data):
    L = data[0]
    values = [v for _, v in _typed_phones(*data)]
    store = {r["会员卡号"] for r in _store_rows(*data)}
    values += [r["手机号"] for r in L.crm if r["会员卡号"] not in store]  # member-card numbers: only reformatted
    values += [r["phone"] for r in L.mp_logins if r["phone"]]
    values += [r["buyer_phone"] for r in _main(L.mp_orders) if r["buyer_phone"]]
    assert_rate(sum(is_formatted(v) for v in values), len(values), N.phone_format, "formatted phones", sigmas=5)
    kinds = {re.sub(r"\d", "9", v) for v in values if is_formatted(v)}
    assert {"+99 999 9999 9999", "99-99999999999", "999-9999-9999"} <= kinds


def test_missing_unionid(data):
    L, truth, _ = data
    followers = [r for f, r in L.oa if MAIN in f and r["subscribe"] == 1]
    assert_rate(sum("unionid" not in r for r in followers), len(followers), N.no_unionid, "OA without unionid")
    by_openid = defaultdict(set)
    for r in L.mp_logins:
        if r["openid"]:
            by_openid[r["openid"]].add(r["unionid"] == "")
    assert all(len(v) == 1 for v in by_openid.values())  # the app side is bound or not, for all of a person's rows
    assert_rate(sum(v == {True} for v in by_openid.values()), len(by_openid), N.no_unionid, "MP without unionid")
    wechat = [r["external_contact"] for r in L.wecom if r["external_contact"]["type"] == 1]
    assert_rate(sum("unionid" not in c for c in wechat), len(wechat), N.no_unionid, "WeCom without unionid")


def test_order_statuses(data):
    L = data[0]
    mp = [r["order_status"] for r in _main(L.mp_orders)]
    for status, rate in (("REFUNDED", N.refund_full), ("PARTIAL_REFUND", N.refund_partial),
                         ("CANCELLED", N.cancelled), ("WAIT_PAY", N.unpaid)):
        assert_rate(mp.count(status), len(mp), rate, f"mini-program {status}")
    tb = _main(L.tb_orders)
    closed_paid = sum(r["订单状态"] == "交易关闭" and r["订单付款时间"] != "" for r in tb)
    closed_unpaid = sum(r["订单状态"] == "交易关闭" and r["订单付款时间"] == "" for r in tb)
    partial = sum(r["订单状态"] == "交易成功" and r["退款金额"] != "0.00" for r in tb)
    unpaid = sum(r["订单状态"] == "等待买家付款" for r in tb)
    assert_rate(closed_paid, len(tb), N.refund_full, "taobao refunded")
    assert_rate(closed_unpaid, len(tb), N.cancelled, "taobao cancelled")
    assert_rate(partial, len(tb), N.refund_partial, "taobao partial refund")
    assert_rate(unpaid, len(tb), N.unpaid, "taobao unpaid")


def test_later_exports(data):
    L, _, _ = data
    main = {r["openid"]: r for f, r in L.oa if MAIN in f}
    later = [r for f, r in L.oa if MAIN not in f]
    subscribed = [r for r in main.values() if r["subscribe"] == 1]
    assert_rate(len(later), len(subscribed), N.follower_reexport, "re-exported followers")
    assert all(main[r["openid"]]["subscribe"] == 1 for r in later)
    unfollowed = [r for r in later if r["subscribe"] == 0]
    assert_rate(len(unfollowed), len(later), N.reexport_unfollow, "unfollowed by the re-export")
    assert all(r == main[r["openid"]] for r in later if r["subscribe"] == 1)

    mp_main = {r["order_id"]: r for r in _main(L.mp_orders)}
    updates = [r for f, r in L.mp_orders if MAIN not in f]
    eligible = [r for r in mp_main.values() if r["order_status"] in ("PAID", "SHIPPED", "COMPLETED")]
    assert_rate(len(updates), len(eligible), N.order_update, "mini-program orders updated", sigmas=5)
    for r in updates:
        before = mp_main[r["order_id"]]
        assert before["order_status"] in ("PAID", "SHIPPED", "COMPLETED")
        assert r["order_status"] == "REFUNDED" and r["refund_amount_fen"] == r["pay_amount_fen"]
        assert {k: v for k, v in r.items() if k not in ("order_status", "refund_amount_fen")} == \
               {k: v for k, v in before.items() if k not in ("order_status", "refund_amount_fen")}
    tb_main = {r["订单编号"]: r for r in _main(L.tb_orders)}
    tb_updates = [r for f, r in L.tb_orders if MAIN not in f]
    assert tb_updates
    for r in tb_updates:
        assert tb_main[r["订单编号"]]["订单状态"] != "交易关闭"
        assert r["订单状态"] == "交易关闭" and r["退款金额"] == r["买家实际支付金额"]


def _time_ok(s: str) -> bool:
    try:
        datetime.strptime(s, "%Y-%m-%d %H:%M:%S")
        return True
    except ValueError:
        return False


def _date_ok(s: str) -> bool:
    try:
        datetime.strptime(s, "%Y-%m-%d")
        return True
    except ValueError:
        return False


def test_malformed_rows(data):
    L = data[0]
    bad = total = 0
    for r in L.mp_logins:
        total += 1
        bad += not r["openid"] or not _time_ok(r["login_time"])
    for r in _main(L.mp_orders):
        total += 1
        bad += not r["openid"] or not r["pay_amount_fen"].isdigit() or not _time_ok(r["created_at"])
    for r in _main(L.tb_orders):
        total += 1
        bad += not re.fullmatch(r"\d+\.\d\d", r["买家实际支付金额"]) or not _time_ok(r["订单创建时间"])
    for r in L.crm:
        total += 1
        bad += ((r["生日"] != "" and not _date_ok(r["生日"])) or not re.fullmatch(r"\d+\.\d\d", r["消费金额"])
                or not _time_ok(r["注册时间"]))
    assert_rate(bad, total, N.malformed, "malformed rows")
    kinds = {r["pay_amount_fen"] for r in _main(L.mp_orders) if not r["pay_amount_fen"].isdigit()}
    assert "abc" in kinds and any(k.startswith("-") for k in kinds)


def _second_cards(L, truth, persons):
    """(members with two cards, members with two numbers); nobody without a second number has two cards."""
    cards = defaultdict(int)
    for r in L.crm:
        cards[truth["crm_members", r["会员卡号"]]] += 1
    assert all(cards[p] == 1 for p in cards if not persons[p]["phone2"])
    eligible = [p for p in cards if persons[p]["phone2"]]
    return sum(cards[p] == 2 for p in eligible), len(eligible)


def test_second_card(data):
    two, eligible = _second_cards(*data)
    assert two > 0
    assert_rate(two, eligible, N.second_card, "second CRM card")


def test_referral_share(data):
    _, _, persons = data
    from samplegen import DEFAULT_REFERRAL_RATE
    invited = sum(p["inviter"] != "" for p in persons.values())
    assert_rate(invited, len(persons), DEFAULT_REFERRAL_RATE, "invitees", sigmas=5)


def test_zero_noise_is_clean(tmp_path):
    from samplegen import generate
    zero = NoiseRates(**{k: 0.0 for k in NoiseRates().as_dict()})
    generate(tmp_path, users=1000, seed=3, noise=zero)
    L = read_landing(tmp_path)
    persons = read_persons(tmp_path)
    typed = _typed_phones(L, read_truth(tmp_path), persons)
    assert typed and all(re.fullmatch(r"1[3-9]\d{9}", v) for _, v in typed + [("crm", r["手机号"]) for r in L.crm])
    assert all("unionid" in r for f, r in L.oa if r["subscribe"] == 1)
    assert all(r["order_status"] in ("PAID", "SHIPPED", "COMPLETED") for _, r in L.mp_orders)
    assert all(MAIN in f for f, _ in L.mp_orders + L.tb_orders)
    assert not any(p["phone2"] or p["shares_phone_of"] for p in persons.values())
