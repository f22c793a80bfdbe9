"""The default brand is a typical one: a person's records are linkable the way real ones are (5,000 persons).

These check the journey rules of docs/sample-data.md ("How records connect"), with bounds loose enough to hold for
any seed yet tight enough that a generator which drops a rule fails.
"""

from collections import defaultdict
from datetime import datetime

import pytest
from samplegen_landing import normalize_phone, read_landing, read_persons, read_truth

MAIN = "20251231"
STORE_ACCOUNTS = ("store_sh01", "store_bj02")


@pytest.fixture(scope="module")
def data(sample5k):
    root, _ = sample5k
    return read_landing(root), read_truth(root), read_persons(root)


def _time(s: str) -> datetime | None:
    try:
        return datetime.strptime(s, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


def _sources(truth) -> dict[str, set[str]]:
    out = defaultdict(set)
    for (source, record_id), pid in truth.items():
        out[pid].add("taobao" if record_id.startswith("taobao/") else source)
    return out


def test_member_card_members_authorized_their_phone_first(data):
    L, truth, persons = data
    logins = defaultdict(list)  # person -> [(time, phone)]
    for r in L.mp_logins:
        t, ph = _time(r["login_time"]), normalize_phone(r["phone"])
        if t and ph:
            logins[truth["mp_logins", r["log_id"]]].append((t, ph))
    checked = ok = 0
    for r in L.crm:
        pid = truth["crm_members", r["会员卡号"]]
        t, ph = _time(r["注册时间"]), normalize_phone(r["手机号"])
        if persons[pid]["crm_registration"] != "mp_card" or t is None or ph != persons[pid]["phone1"]:
            continue  # (a second card carries the other number)
        checked += 1
        ok += any(lt <= t and lph == ph for lt, lph in logins[pid])
    assert checked > 500
    assert ok >= 0.98 * checked  # a malformed login time may hide the registration session


def test_store_members_are_contacts_of_the_store_with_their_phone(data):
    L, truth, persons = data
    crm_phones = defaultdict(set)
    for r in L.crm:
        crm_phones[truth["crm_members", r["会员卡号"]]].add(normalize_phone(r["手机号"]))
    store_follows = defaultdict(list)
    for r in L.wecom:
        for fu in r["follow_user"]:
            if fu["userid"] in STORE_ACCOUNTS:
                store_follows[truth["wecom_contacts", f"{r['external_contact']['external_userid']}/{fu['userid']}"]] \
                    .append(fu)
    members = [pid for pid, p in persons.items() if p["crm_registration"] == "store"]
    assert len(members) > 200
    added = [pid for pid in members if store_follows[pid]]
    assert len(added) >= 0.8 * len(members)
    noted = [(pid, normalize_phone(m)) for pid in added for fu in store_follows[pid] for m in fu["remark_mobiles"]]
    assert len(noted) >= 0.75 * len(added)
    usable = [(pid, ph) for pid, ph in noted if ph and crm_phones[pid] - {None}]
    assert sum(ph in crm_phones[pid] for pid, ph in usable) >= 0.97 * len(usable)


def test_followers_mostly_use_another_bound_app(data):
    _, truth, _ = data
    sources = _sources(truth)
    followers = [pid for pid, s in sources.items() if "oa_followers" in s]
    with_app = sum(bool({"mp_logins", "wecom_contacts"} & sources[pid]) for pid in followers)
    assert 0.88 * len(followers) <= with_app < len(followers)  # OA-only followers exist, as a minority


def test_taobao_buyers_use_their_own_number_known_elsewhere(data):
    L, truth, persons = data
    known = defaultdict(set)
    for r in L.mp_logins:
        known[truth["mp_logins", r["log_id"]]].add(normalize_phone(r["phone"]))
    for r in L.crm:
        known[truth["crm_members", r["会员卡号"]]].add(normalize_phone(r["手机号"]))
    orders = [(truth["orders", f"taobao/{r['订单编号']}"], normalize_phone(r["联系手机"]))
              for f, r in L.tb_orders if MAIN in f]
    own = sum(ph in (persons[pid]["phone1"], persons[pid]["phone2"]) for pid, ph in orders)
    assert own >= 0.75 * len(orders)
    buyers = {pid for pid, _ in orders}
    assert sum(persons[pid]["phone1"] in known[pid] for pid in buyers) >= 0.85 * len(buyers)


def test_parcel_card_contacts_note_the_phone(data):
    L, _, _ = data
    parcel = [fu for r in L.wecom for fu in r["follow_user"]
              if fu.get("state") == "parcel_card" and not fu["userid"].startswith("store")]
    assert len(parcel) > 300
    assert sum(bool(fu["remark_mobiles"]) for fu in parcel) >= 0.8 * len(parcel)
