"""The generator: simulated persons, their journeys through the brand's channels, and the exports they leave.

Persons are made in chunks of CHUNK_SIZE. A chunk's random stream depends only on (seed, chunk index), and
everything a chunk writes refers only to persons of that chunk (inviters, family members, gift receivers), so
memory stays flat whatever the number of users and the output depends on nothing but the arguments.
Sequential ids (log ids, order numbers, card numbers) continue across chunks through `_Counters`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from . import vocab as V
from .ids import (CHINA_OFFSET, feistel8, fen_to_yuan, format_days, format_local, phone_strings,
                  phones_from_index, random_hex, random_tokens)
from .noise import NoiseRates
from .writers import CsvOut, JsonlOut

CHUNK_SIZE = 20_000
FORMAT_VERSION = 2
DEFAULT_START = date(2025, 1, 1)
DEFAULT_END = date(2025, 12, 31)
DEFAULT_REFERRAL_RATE = 0.12
DEFAULT_ACTIVITY = 1.0
MAX_ACTIVITY = 20.0  # beyond this a typo (25 for 2.5) would quietly write ten times the data
REEXPORT_AFTER_DAYS = 14  # the later exports (followers, order updates) are taken two weeks after --end
OUTSIDER_PHONE_BASE = 200_000_000  # phone indexes of gift receivers who are not customers (persons use < 2e8)

DAY = 86_400

# Journey probabilities for touchpoints other than the entry one (which is always there). The defaults describe a
# typical brand whose Official Account, mini-program and WeCom are all bound to one Open Platform account, so
# that a person's records are linkable the way real ones are (docs/sample-data.md, "The journey").
P_OA = 0.45
P_MP = 0.50
P_WECOM = 0.30
P_TAOBAO = 0.10
P_CRM = 0.15
P_CRM_IF_BUYER = 0.40
P_CRM_IF_TAOBAO = 0.60   # the parcel carries the member card's QR code: Taobao buyers join the member program
P_CRM_STORE = 0.20       # later CRM registrations made in a store (typed by staff); the rest use the member card
P_TAOBAO_CLAIM = 0.70    # a Taobao buyer whose number the brand does not know yet claims the parcel-card coupon
P_MP_BUYER = 0.50
P_OA_WITH_APP = 0.60     # a follower who uses neither the mini-program nor WeCom yet does use one of them
P_OA_WITH_APP_MP = 0.65  # ... and that one is the mini-program (else a WeCom add)
P_UNFOLLOWED = 0.03      # followers who already unfollowed at the main export (never the code-carrying follow)
P_SECOND_STAFF = 0.15
P_WECOM_TYPE2 = 0.02     # contacts that are WeCom users themselves (`wo...`, never a unionid)
P_REMARK_MOBILE = 0.80   # a staff add by a salesperson has the phone in remark_mobiles
P_STORE_REMARK = 0.90    # a store add (at the counter, during registration) has it
P_PARCEL_REMARK = 0.90   # a parcel-card add has it: staff ask for the order's phone to find the order
P_STORE_WECOM = 0.90     # a member registered in a store is also added on WeCom by the store account
P_PHONE_AUTH_BUYER = 0.80
P_PHONE_AUTH_OTHER = 0.50
P_SECOND_PHONE_USE = 0.30  # a typed phone of a two-phone person is the second one
P_CRM_CHANNEL = 0.60       # a non-store CRM member still has 来源渠道 filled in
STORE_WEIGHTS = (0.6, 0.4)  # which store a non-store-channel person registers in (store_sh01, store_bj02)

CRM_NONE, CRM_MP_CARD, CRM_STORE = 0, 1, 2
CRM_VIA_NAMES = ["", "mp_card", "store"]


@dataclass
class _Counters:
    log: int = 0
    mp_order: int = 0
    tb_order: int = 0
    member: int = 0
    invite: int = 0

    def take(self, name: str, n: int) -> np.ndarray:
        first = getattr(self, name)
        setattr(self, name, first + n)
        return np.arange(first, first + n, dtype=np.int64)


@dataclass
class _Globals:
    """Per-seed constants shared by all chunks."""

    phone_keys: np.ndarray
    nick_keys: np.ndarray
    oa_prefix: str
    mp_prefix: str
    union_prefix: str
    staff_phones: list[str]

    @classmethod
    def from_seed(cls, seed: int) -> "_Globals":
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
        phone_keys = rng.integers(0, 2**31, 4)
        nick_keys = rng.integers(0, 2**31, 4)
        # Real openids of one app share their first characters; so do unionids of one Open Platform account.
        oa, mp, un = random_tokens(rng, 3, 5, "o")
        digits = rng.integers(10_000_000, 100_000_000, 2)
        if digits[0] == digits[1]:
            digits[1] = (digits[1] + 1) % 100_000_000
        return cls(phone_keys, nick_keys, oa, mp, un, [f"166{d:08d}" for d in digits.tolist()])


@dataclass
class _Window:
    start_t: int
    end_t: int
    reexport_t: int

    @property
    def days(self) -> int:
        return (self.end_t + 1 - self.start_t) // DAY


def _local_seconds(d: date) -> int:
    return (d - date(1970, 1, 1)).days * DAY


@dataclass
class _Persons:
    n: int
    g: np.ndarray
    pid: list[str]
    gender: np.ndarray
    birthday: np.ndarray      # days since epoch
    region: np.ndarray
    name: np.ndarray          # str array
    channel: np.ndarray       # index into V.CHANNELS, after referral inheritance
    entry: np.ndarray
    join_t: np.ndarray
    inviter: np.ndarray       # local index or -1
    phone1: np.ndarray
    phone2: np.ndarray        # 0 when none
    family_of: np.ndarray     # local index of the person whose phone is shared, or -1
    unionid: list[str]
    oa_openid: list[str]
    mp_openid: list[str]
    ext_id: list[str]
    ext_type: np.ndarray
    tb_nick: list[str]
    nickname: list[str]
    oa_bound: np.ndarray
    mp_bound: np.ndarray
    wecom_bound: np.ndarray
    has_oa: np.ndarray
    has_mp: np.ndarray
    has_wecom: np.ndarray
    has_tb: np.ndarray
    has_crm: np.ndarray
    mp_buyer: np.ndarray
    phone_auth: np.ndarray
    oa_t: np.ndarray
    mp_t: np.ndarray
    wecom_t: np.ndarray
    crm_t: np.ndarray
    tb_t: np.ndarray
    crm_via: np.ndarray       # CRM_NONE, CRM_MP_CARD (member card in the mini-program) or CRM_STORE (typed by staff)
    store: np.ndarray         # index into V.STORE_STAFF (sh01, bj02): where a person would register in a store
    typed_phone: np.ndarray   # the number the person tells store staff (phone2 sometimes)
    reg_login_t: np.ndarray   # mini-program login at a member-card registration, -1 when none
    store_add: np.ndarray     # added on WeCom by the store account when registering in the store
    store_add_t: np.ndarray
    entry_record: list = field(default_factory=list)


def _choice_weights(items) -> np.ndarray:
    w = np.array([x[-1] for x in items], dtype=float)
    return w / w.sum()


def _lag(rng, base: np.ndarray, mean_days: float, end_t: int) -> np.ndarray:
    """A later moment after `base`, exponential in delay, folded back uniformly into the window when past it."""
    t = base + (rng.exponential(mean_days * DAY, len(base))).astype(np.int64) + 60
    over = t > end_t
    span = np.maximum(end_t - base[over] - 1, 0)
    t[over] = base[over] + np.minimum(1 + (rng.random(int(over.sum())) * span).astype(np.int64), span + 1)
    t = np.minimum(t, np.maximum(end_t, base))
    return t


def _repeat_p(p: float, activity: float) -> float:
    """The geometric parameter whose repeats (draw - 1) average `activity` times those of geometric(p).

    Only the repeats scale: a buyer still has a first order and a mini-program user a first login, so the count
    stays >= 1 and any activity > 0 is valid.
    """
    if activity == 1.0:
        return p  # the very same float, so the default brand draws exactly what it always drew
    return 1.0 / (1.0 + activity * (1.0 - p) / p)


def _join_times(rng, channel: np.ndarray, win: _Window, start: date) -> np.ndarray:
    n = len(channel)
    hour_p = np.array(V.HOUR_WEIGHTS) / sum(V.HOUR_WEIGHTS)
    # Growth: more people join later in the year than early.
    day = np.floor(win.days * rng.random(n) ** (1 / 1.3)).astype(np.int64)
    tod = rng.choice(24, n, p=hour_p) * 3600 + rng.integers(0, 3600, n)
    for ci, ch in enumerate(V.CHANNELS):
        if ch.window is None:
            continue
        month, mday, length = ch.window
        try:
            w0 = (date(start.year, month, mday) - start).days
        except ValueError:
            continue
        w1 = min(w0 + length, win.days)
        if w0 < 0 or w0 >= win.days:
            continue
        m = channel == ci
        k = int(m.sum())
        if ch.evening:
            # livestream joins pile up on the day itself and fade over the next days
            day[m] = np.minimum(w0 + rng.geometric(0.6, k) - 1, w1 - 1)
            tod[m] = rng.integers(19 * 3600, 24 * 3600, k)
        else:
            day[m] = rng.integers(w0, w1, k)
    return win.start_t + day * DAY + tod


def _make_persons(rng, g0: int, n: int, win: _Window, start: date, G: _Globals, noise: NoiseRates,
                  referral_rate: float) -> _Persons:
    g = np.arange(g0, g0 + n, dtype=np.int64)
    pid = [f"p{x + 1:07d}" for x in g.tolist()]
    gender = rng.choice(3, n, p=[0.04, 0.38, 0.58])  # 0 unknown, 1 male, 2 female (WeChat's coding)
    age = np.clip(np.round(rng.normal(33, 9, n)), 18, 70).astype(np.int64)
    birthday = (np.array([f"{start.year - a}-01-01" for a in range(0, 71)], dtype="datetime64[D]")
                .astype(np.int64)[age] + rng.integers(0, 365, n))
    region = rng.choice(len(V.REGIONS), n, p=_choice_weights(V.REGIONS))
    surname = np.array(V.SURNAMES)[rng.integers(0, len(V.SURNAMES), n)]
    g1 = np.array(V.GIVEN_FIRST)[rng.integers(0, len(V.GIVEN_FIRST), n)]
    g2 = np.array(V.GIVEN_SECOND)[rng.integers(0, len(V.GIVEN_SECOND), n)]
    given = np.strings.add(g1, g2)
    name = np.strings.add(surname, given)

    ch_w = np.array([c.weight for c in V.CHANNELS])
    channel = rng.choice(len(V.CHANNELS), n, p=ch_w / ch_w.sum())
    join_t = np.minimum(_join_times(rng, channel, win, start), win.end_t)
    entry = np.zeros(n, dtype=np.int8)
    for ci, ch in enumerate(V.CHANNELS):
        m = np.flatnonzero(channel == ci)
        kinds = list(ch.entries)
        p = np.array([ch.entries[k] for k in kinds])
        entry[m] = np.array(kinds)[rng.choice(len(kinds), len(m), p=p / p.sum())]

    # A parcel card needs days to travel: its first Taobao order is placed early enough for the WeCom add to
    # fall inside the window, strictly before any later touch.
    parcel_ci = next(i for i, c in enumerate(V.CHANNELS) if c.code == "parcel_card")
    late_parcel = (channel == parcel_ci) & (entry == V.ENTRY_WECOM)
    join_t = np.where(late_parcel, np.maximum(np.minimum(join_t, win.end_t - 10 * DAY), win.start_t), join_t)

    # Referrals: an invitee joined at least an hour after an inviter, picked with heavy-tailed weights so a few
    # people bring many friends. The invitee inherits the channel of the root of its invitation chain.
    order = np.argsort(join_t, kind="stable")
    sorted_join = join_t[order]
    earlier = np.searchsorted(sorted_join, join_t - 3600, side="left")
    cum_w = np.cumsum(rng.lognormal(0.0, 1.2, n))
    u_ref = rng.random(n)
    u_pick = rng.random(n)
    invitee = (u_ref < referral_rate) & (earlier > 0)
    inviter = np.full(n, -1, dtype=np.int64)
    idx = np.flatnonzero(invitee)
    target = u_pick[idx] * cum_w[earlier[idx] - 1]
    pos = np.minimum(np.searchsorted(cum_w, target, side="right"), earlier[idx] - 1)
    inviter[idx] = order[pos]
    root = np.arange(n)
    root[idx] = inviter[idx]
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    channel = channel[root]
    entry[idx] = V.ENTRY_REFERRAL
    is_inviter = np.zeros(n, dtype=bool)
    is_inviter[inviter[idx]] = True

    phone1 = phones_from_index(2 * g, G.phone_keys)
    phone2 = np.where(rng.random(n) < noise.two_phones, phones_from_index(2 * g + 1, G.phone_keys), 0)
    family_of = np.full(n, -1, dtype=np.int64)
    sec = np.flatnonzero(rng.random(n) < noise.family_phone)
    others = np.setdiff1d(np.arange(n), sec)
    sec = sec[: len(others)]
    if len(sec):
        partner = rng.choice(others, len(sec), replace=False)
        family_of[sec] = partner
        phone1[sec] = phone1[partner]

    unionid = random_tokens(rng, n, 22, G.union_prefix)
    oa_openid = random_tokens(rng, n, 22, G.oa_prefix)
    mp_openid = random_tokens(rng, n, 22, G.mp_prefix)
    ext_type = np.where(rng.random(n) < P_WECOM_TYPE2, 2, 1)
    ext_body = random_tokens(rng, n, 30)
    ext_id = [("wo" if t == 2 else "wm") + b for t, b in zip(ext_type.tolist(), ext_body)]
    oa_bound = rng.random(n) >= noise.no_unionid
    mp_bound = rng.random(n) >= noise.no_unionid
    wecom_bound = (rng.random(n) >= noise.no_unionid) & (ext_type == 1)

    # Taobao nicks are unique per platform: a keyed bijection of the global index keeps them so at any scale.
    nick_num = feistel8(g % 100_000_000, G.nick_keys).tolist()
    style = rng.integers(0, 3, n).tolist()
    word = rng.integers(0, len(V.TB_WORDS), n).tolist()
    given_l = given.tolist()
    tb_nick = []
    for s, w, k, gv in zip(style, word, nick_num, given_l):
        if s == 0:
            tb_nick.append(f"tb_{gv}_{k}")
        elif s == 1:
            tb_nick.append(f"{V.TB_WORDS[w]}{k}")
        else:
            tb_nick.append(f"tb{k:08d}")

    nick_style = rng.integers(0, 5, n).tolist()
    nick_a = rng.integers(0, len(V.NICK_WORDS), n).tolist()
    nick_b = rng.integers(0, len(V.NICK_SUFFIXES), n).tolist()
    nick_c = rng.integers(0, len(V.NICK_DECOR), n).tolist()
    name_l = name.tolist()
    nickname = []
    for s, a, b, c, nm, gv in zip(nick_style, nick_a, nick_b, nick_c, name_l, given_l):
        if s <= 1:
            nickname.append(nm)
        elif s == 2:
            nickname.append(f"{gv}{V.NICK_SUFFIXES[b]}")
        elif s == 3:
            nickname.append(V.NICK_WORDS[a])
        else:
            nickname.append(f"{V.NICK_DECOR[c]}{gv}")

    e = entry
    store_ci = {c.code: i for i, c in enumerate(V.CHANNELS) if c.code in V.STORE_STAFF}
    store_codes = list(V.STORE_STAFF)
    has_oa = np.isin(e, [V.ENTRY_OA_QR, V.ENTRY_OA_OTHER]) | (rng.random(n) < P_OA)
    has_mp = np.isin(e, [V.ENTRY_MP, V.ENTRY_REFERRAL]) | is_inviter | (rng.random(n) < P_MP)
    has_wecom = (e == V.ENTRY_WECOM) | (rng.random(n) < P_WECOM)
    parcel_entry = (e == V.ENTRY_WECOM) & (channel == parcel_ci)
    has_tb = parcel_entry | (rng.random(n) < P_TAOBAO)
    mp_buyer = has_mp & (rng.random(n) < P_MP_BUYER)
    p_crm = np.where(has_tb, P_CRM_IF_TAOBAO, np.where(mp_buyer, P_CRM_IF_BUYER, P_CRM))
    has_crm = (e == V.ENTRY_CRM) | (rng.random(n) < p_crm)
    # Store registrations are typed in by staff; every other member opens the member card in the mini-program,
    # which requires phone authorization. Online (Taobao) buyers join through the card in their parcel.
    in_store = (e == V.ENTRY_CRM) | (~has_tb & (rng.random(n) < P_CRM_STORE))
    crm_via = np.where(has_crm, np.where(in_store, CRM_STORE, CRM_MP_CARD), CRM_NONE).astype(np.int8)
    mp_card = crm_via == CRM_MP_CARD
    mp_before_card = has_mp.copy()
    has_mp = has_mp | mp_card
    phone_auth = rng.random(n) < np.where(mp_buyer | has_tb, P_PHONE_AUTH_BUYER, P_PHONE_AUTH_OTHER)
    phone_auth = phone_auth | mp_card
    # The parcel card's QR code opens the mini-program, which asks for the phone number to claim the coupon: most
    # Taobao buyers' number is known to the brand through the CRM or a mini-program phone authorization.
    tb_claim = has_tb & ~has_crm & ~(has_mp & phone_auth) & (rng.random(n) < P_TAOBAO_CLAIM)
    mp_before_claim = has_mp.copy()
    has_mp = has_mp | tb_claim
    phone_auth = phone_auth | tb_claim
    store = np.where(rng.random(n) < STORE_WEIGHTS[0], 0, 1)
    for si, code in enumerate(store_codes):
        store = np.where(channel == store_ci[code], si, store)
    store_entry = (e == V.ENTRY_WECOM) & np.isin(channel, list(store_ci.values()))
    # A store member is added by the store account at the counter; a person whose first touch already was that
    # add is a contact of the store account already.
    store_add = (crm_via == CRM_STORE) & ~store_entry & (rng.random(n) < P_STORE_WECOM)
    # Followers of the Official Account mostly use the mini-program or meet WeCom staff too (both bound apps).
    oa_alone = has_oa & ~has_mp & ~has_wecom & ~store_add
    join_app = oa_alone & (rng.random(n) < P_OA_WITH_APP)
    to_mp = rng.random(n) < P_OA_WITH_APP_MP
    has_mp = has_mp | (join_app & to_mp)
    has_wecom = has_wecom | (join_app & ~to_mp)
    typed_phone = np.where((phone2 > 0) & (rng.random(n) < P_SECOND_PHONE_USE), phone2, phone1)

    end_t = win.end_t
    # The parcel card arrives with the first Taobao parcel, a few days after that order; touches that may carry
    # another channel code come after the code-carrying first touch, so first-touch attribution has one answer.
    wecom_entry_t = np.where(parcel_entry, np.minimum(join_t + rng.integers(3 * DAY, 10 * DAY, n), end_t), join_t)
    code_t = np.where(e == V.ENTRY_WECOM, wecom_entry_t, join_t)
    oa_t = np.where(np.isin(e, [V.ENTRY_OA_QR, V.ENTRY_OA_OTHER]), join_t, _lag(rng, code_t, 25, end_t))
    mp_t = _lag(rng, join_t, 20, end_t)
    mp_t = np.where(e == V.ENTRY_MP, join_t, mp_t)
    mp_t = np.where(e == V.ENTRY_REFERRAL, join_t + rng.integers(5, 300, n), mp_t)
    # An inviter was in the mini-program before sharing: within the hour after joining.
    soon = join_t + rng.integers(60, 3600, n)
    mp_t = np.where(is_inviter & (e != V.ENTRY_MP), np.minimum(mp_t, soon), mp_t)
    mp_t = np.minimum(mp_t, end_t)
    wecom_t = np.where(e == V.ENTRY_WECOM, wecom_entry_t, _lag(rng, join_t, 30, end_t))
    crm_t = np.where(e == V.ENTRY_CRM, join_t, _lag(rng, code_t, 40, end_t))
    tb_t = np.where(parcel_entry, join_t, _lag(rng, join_t, 30, end_t))
    # A Taobao buyer new to the mini-program opens it from the parcel card, days after their first order.
    claim_t = np.minimum(np.maximum(tb_t + rng.integers(3 * DAY, 10 * DAY, n), join_t + 1), end_t)
    mp_t = np.where(tb_claim & ~mp_before_claim, claim_t, mp_t)
    # A member-card registration happens in a mini-program session that authorized the phone, minutes before the
    # member record is written; for a person new to the mini-program it is their first login.
    reg_t = np.maximum(crm_t - rng.integers(30, 1200, n), join_t + 1)
    reg_login_t = np.where(mp_card, np.minimum(reg_t, crm_t), -1)
    mp_t = np.where(mp_card & ~mp_before_card, reg_login_t,
                    np.where(mp_card, np.minimum(mp_t, reg_login_t), mp_t))
    store_add_t = np.where(store_add, np.minimum(crm_t + rng.integers(60, 1800, n), end_t), -1)
    # A person whose only WeCom add is the store's: their contact starts there.
    wecom_t = np.where(store_add & ~has_wecom, store_add_t, wecom_t)

    return _Persons(
        n=n, g=g, pid=pid, gender=gender, birthday=birthday, region=region, name=name, channel=channel,
        entry=entry, join_t=join_t, inviter=inviter, phone1=phone1, phone2=phone2, family_of=family_of,
        unionid=unionid, oa_openid=oa_openid, mp_openid=mp_openid, ext_id=ext_id, ext_type=ext_type,
        tb_nick=tb_nick, nickname=nickname, oa_bound=oa_bound, mp_bound=mp_bound, wecom_bound=wecom_bound,
        has_oa=has_oa, has_mp=has_mp, has_wecom=has_wecom, has_tb=has_tb, has_crm=has_crm, mp_buyer=mp_buyer,
        phone_auth=phone_auth, oa_t=oa_t, mp_t=mp_t, wecom_t=wecom_t, crm_t=crm_t, tb_t=tb_t,
        crm_via=crm_via, store=store, typed_phone=typed_phone, reg_login_t=reg_login_t, store_add=store_add,
        store_add_t=store_add_t, entry_record=[""] * n,
    )


# --- phone values as they end up in exports ---------------------------------------------------------------

JUNK, MASKED, CIPHER, FORMAT = "junk", "masked", "cipher", "format"


def _pick_phones(rng, P: _Persons, who: np.ndarray) -> np.ndarray:
    """The number a person types: the second one sometimes, when they have two."""
    use2 = (P.phone2[who] > 0) & (rng.random(len(who)) < P_SECOND_PHONE_USE)
    return np.where(use2, P.phone2[who], P.phone1[who])


def _noisy_phones(rng, phones: np.ndarray, kinds: tuple, noise: NoiseRates, G: _Globals) -> list[str]:
    """Each value independently draws at most one imperfection; the rate of each is exactly its NoiseRates value."""
    n = len(phones)
    out = phone_strings(phones).tolist()
    u = rng.random(n)
    rates = {JUNK: noise.junk_phone, MASKED: noise.masked_phone, CIPHER: noise.cipher_phone,
             FORMAT: noise.phone_format}
    lo = 0.0
    for kind in (JUNK, MASKED, CIPHER, FORMAT):
        if kind not in kinds:
            continue
        hi = lo + rates[kind]
        idx = np.flatnonzero((u >= lo) & (u < hi)).tolist()
        lo = hi
        if not idx:
            continue
        style = rng.integers(0, 5, len(idx)).tolist()
        if kind == JUNK:
            pool = [v for v, _ in V.JUNK_PHONES] + G.staff_phones
            w = np.array([p for _, p in V.JUNK_PHONES] + [V.STAFF_PHONE_WEIGHT] * len(G.staff_phones))
            pick = rng.choice(len(pool), len(idx), p=w / w.sum()).tolist()
            for i, k in zip(idx, pick):
                out[i] = pool[k]
        elif kind == MASKED:
            for i, s in zip(idx, style):
                v = out[i]
                out[i] = f"{v[:3]}****{v[-4:]}" if s < 3 else f"{v[0]}******{v[-4:]}"
        elif kind == CIPHER:
            hexes = random_hex(rng, len(idx), 32, "##")
            tokens = random_tokens(rng, len(idx), 28, "$$")
            for i, s, h, t in zip(idx, style, hexes, tokens):
                out[i] = h if s < 3 else t + "=="
        else:
            for i, s in zip(idx, style):
                v = out[i]
                out[i] = (f"+86 {v[:3]} {v[3:7]} {v[7:]}", f"86-{v}", f"{v[:3]} {v[3:7]} {v[7:]}",
                          f"{v[:3]}-{v[3:7]}-{v[7:]}", f"+86{v}")[s]
    return out


def _sequence(rng, owners: np.ndarray, first_t: np.ndarray, counts: np.ndarray, gap_days: float,
              end_t: int) -> tuple[np.ndarray, np.ndarray]:
    """Repeated events per owner (orders): first at first_t, then exponential gaps; those after the window drop."""
    rows = np.repeat(owners, counts)
    if len(rows) == 0:
        return rows, rows.copy()
    gaps = (rng.exponential(gap_days * DAY, len(rows))).astype(np.int64) + 3600
    starts = np.cumsum(counts) - counts
    gaps[starts] = 0
    cs = np.cumsum(gaps)
    within = cs - np.repeat(cs[starts], counts)
    t = np.repeat(first_t, counts) + within
    keep = t <= end_t
    return rows[keep], t[keep]


def _other_person(rng, who: np.ndarray, n: int) -> np.ndarray:
    if n < 2:
        return who.copy()
    o = rng.integers(0, n - 1, len(who))
    return np.where(o >= who, o + 1, o)


def _malformed_mask(rng, rows: int, noise: NoiseRates) -> tuple[np.ndarray, np.ndarray]:
    return rng.random(rows) < noise.malformed, rng.integers(0, 4, rows)


# --- orders -----------------------------------------------------------------------------------------------

S_UNPAID, S_CANCELLED, S_REFUNDED, S_PARTIAL, S_PAID, S_SHIPPED, S_COMPLETED = range(7)
_MP_STATUS_WORD = {S_UNPAID: "WAIT_PAY", S_CANCELLED: "CANCELLED", S_REFUNDED: "REFUNDED",
                   S_PARTIAL: "PARTIAL_REFUND", S_PAID: "PAID", S_SHIPPED: "SHIPPED", S_COMPLETED: "COMPLETED"}
_TB_STATUS_WORD = {S_UNPAID: V.TB_UNPAID, S_CANCELLED: V.TB_CLOSED, S_REFUNDED: V.TB_CLOSED,
                   S_PARTIAL: V.TB_SUCCESS, S_PAID: V.TB_PAID, S_SHIPPED: V.TB_SHIPPED, S_COMPLETED: V.TB_SUCCESS}


@dataclass
class _Orders:
    buyer: np.ndarray
    created: np.ndarray
    paid: np.ndarray          # -1 when unpaid
    amount: np.ndarray        # fen
    refund: np.ndarray        # fen
    status: np.ndarray
    receiver: np.ndarray      # person index, -1 for a gift to someone outside the brand's customers
    receiver_phone: list[str]
    receiver_name: list[str]
    receiver_address: list[str]
    ids: np.ndarray           # counter values, in order


def _make_orders(rng, P: _Persons, who: np.ndarray, first_t: np.ndarray, counts: np.ndarray, gap_days: float,
                 win: _Window, noise: NoiseRates, G: _Globals, C: _Counters, counter: str) -> _Orders:
    buyer, created = _sequence(rng, who, first_t, counts, gap_days, win.end_t)
    order = np.lexsort((buyer, created))
    buyer, created = buyer[order], created[order]
    m = len(buyer)
    ids = C.take(counter, m)
    amount = np.clip(np.round(rng.lognormal(np.log(15_000), 0.65, m)), 990, 300_000).astype(np.int64)
    u = rng.random(m)
    cuts = np.cumsum([noise.unpaid, noise.cancelled, noise.refund_full, noise.refund_partial])
    age = win.end_t - created
    status = np.where(age < 2 * DAY, S_PAID, np.where(age < 7 * DAY, S_SHIPPED, S_COMPLETED))
    status = np.where(u < cuts[3], S_PARTIAL, status)
    status = np.where(u < cuts[2], S_REFUNDED, status)
    status = np.where(u < cuts[1], S_CANCELLED, status)
    status = np.where(u < cuts[0], S_UNPAID, status)
    paid = np.where(status >= S_REFUNDED, created + rng.integers(10, 600, m), -1)
    share = rng.uniform(0.1, 0.9, m)
    refund = np.where(status == S_REFUNDED, amount,
                      np.where(status == S_PARTIAL, np.round(amount * share).astype(np.int64), 0))
    gift = rng.random(m) < noise.gift_order
    # Most gifts go to someone who is not a customer of the brand: a number seen nowhere else. Outsiders' numbers
    # come from indexes above every person's (2 * 10**8 + 2 * order counter, + 1 on Taobao), so they never collide.
    outsider = gift & (rng.random(m) >= noise.gift_customer)
    receiver = np.where(gift & ~outsider, _other_person(rng, buyer, P.n), buyer)
    numbers = _pick_phones(rng, P, receiver)
    numbers = np.where(outsider, phones_from_index(OUTSIDER_PHONE_BASE + 2 * ids + (counter == "tb_order"),
                                                   G.phone_keys), numbers)
    receiver_phone = _noisy_phones(rng, numbers, (JUNK, MASKED, CIPHER, FORMAT), noise, G)
    polite = rng.random(m) < 0.1
    names = P.name[receiver].tolist()
    out_gender = rng.integers(1, 3, m).tolist()
    out_names = np.strings.add(np.array(V.SURNAMES)[rng.integers(0, len(V.SURNAMES), m)],
                               np.array(V.GIVEN_SECOND)[rng.integers(0, len(V.GIVEN_SECOND), m)]).tolist()
    genders = np.where(outsider, out_gender, P.gender[receiver]).tolist()
    receiver_name = [f"{nm[0]}{'先生' if gd == 1 else '女士'}" if pol else nm
                     for nm, gd, pol in zip(np.where(outsider, out_names, names).tolist(), genders,
                                            polite.tolist())]
    # Derived from indexes, not drawn from rng, so adding addresses left every other generated value unchanged.
    # A customer always gets parcels at one address in their home region; an outsider somewhere by order id.
    address_key = np.where(outsider, ids, receiver)
    region = np.where(outsider, (ids * 2_654_435_761) % len(V.REGIONS), P.region[receiver])
    spaced = counter == "tb_order"
    receiver_address = [V.receiving_address(r, k, spaced) for r, k in zip(region.tolist(), address_key.tolist())]
    receiver = np.where(outsider, -1, receiver)
    return _Orders(buyer, created, paid, amount, refund, status, receiver, receiver_phone, receiver_name,
                   receiver_address, ids)


_BAD_TIMES = ["2025/13/45 25:61", "0000-00-00 00:00:00", "昨天 14:30", "NaN", "2025-02-30 10:00:00"]


def _mp_orders(rng, P: _Persons, win: _Window, noise: NoiseRates, G: _Globals, C: _Counters, activity: float):
    who = np.flatnonzero(P.mp_buyer)
    counts = rng.geometric(_repeat_p(0.55, activity), len(who))
    first_t = _lag(rng, P.mp_t[who], 7, win.end_t)
    # More engaged buyers order more often, not over a longer span: with the usual gaps about half of the extra
    # orders would fall after --end and be dropped (20k persons at activity 2.5).
    o = _make_orders(rng, P, who, first_t, counts, 40 / activity, win, noise, G, C, "mp_order")
    m = len(o.buyer)
    ids = o.ids
    days = format_days(o.created // DAY)
    order_id = [f"{d.replace('-', '')}{k:08d}" for d, k in zip(days, ids.tolist())]
    buyer_phone_raw = _noisy_phones(rng, P.phone1[o.buyer], (FORMAT,), noise, G)
    auth = P.phone_auth[o.buyer].tolist()
    buyer_phone = [p if a else "" for p, a in zip(buyer_phone_raw, auth)]
    created_s = format_local(o.created)
    paid_s = format_local(np.maximum(o.paid, 0))
    paid_l = o.paid.tolist()
    bad, bad_kind = _malformed_mask(rng, m, noise)
    bad_time = rng.integers(0, len(_BAD_TIMES), m).tolist()
    rows, update_rows = [], []
    upd = (rng.random(m) < noise.order_update) & (o.status >= S_PAID) & ~bad
    buyers = o.buyer.tolist()
    for i in range(m):
        b = buyers[i]
        openid = P.mp_openid[b]
        row = [order_id[i], V.MP_APPID, openid, P.unionid[b] if P.mp_bound[b] else "", buyer_phone[i],
               o.receiver_name[i], o.receiver_phone[i], o.receiver_address[i], _MP_STATUS_WORD[int(o.status[i])],
               str(int(o.amount[i])), str(int(o.refund[i])), created_s[i], paid_s[i] if paid_l[i] >= 0 else ""]
        if bad[i]:
            k = bad_kind[i]
            if k == 0:
                row[9] = "abc"
            elif k == 1:
                row[9] = f"-{row[9]}"
            elif k == 2:
                row[11] = _BAD_TIMES[bad_time[i]]
            else:
                row[2] = ""
        rows.append(row)
        if upd[i]:
            u_row = list(row)
            u_row[8] = "REFUNDED"
            u_row[10] = u_row[9]
            update_rows.append(u_row)
    truth = [("orders", f"miniprogram_shop/{oid}", P.pid[b]) for oid, b in zip(order_id, buyers)]
    return o, rows, update_rows, truth


def _tb_orders(rng, P: _Persons, win: _Window, noise: NoiseRates, G: _Globals, C: _Counters, activity: float):
    who = np.flatnonzero(P.has_tb)
    counts = rng.geometric(_repeat_p(0.6, activity), len(who))
    o = _make_orders(rng, P, who, P.tb_t[who], counts, 50 / activity, win, noise, G, C, "tb_order")
    m = len(o.buyer)
    ids = o.ids
    # 19 digits like real Taobao numbers; the scrambled counter in the high digits keeps them unique.
    tid = (3_000_000_000_000_000_000 + feistel8(ids % 100_000_000, G.nick_keys[::-1]) * 10_000_000_000
           + rng.integers(0, 10_000_000_000, m)).tolist()
    unpaid = o.paid < 0
    paid_amount = fen_to_yuan(np.where(unpaid, 0, o.amount))
    refund = fen_to_yuan(o.refund)
    created_s = format_local(o.created)
    paid_s = format_local(np.maximum(o.paid, 0))
    unpaid_l = unpaid.tolist()
    bad, bad_kind = _malformed_mask(rng, m, noise)
    bad_time = rng.integers(0, len(_BAD_TIMES), m).tolist()
    upd = (rng.random(m) < noise.order_update) & (o.status >= S_PAID) & ~bad
    buyers = o.buyer.tolist()
    rows, update_rows = [], []
    for i in range(m):
        b = buyers[i]
        row = [str(tid[i]), P.tb_nick[b], paid_amount[i], _TB_STATUS_WORD[int(o.status[i])], o.receiver_name[i],
               o.receiver_phone[i], o.receiver_address[i], created_s[i], "" if unpaid_l[i] else paid_s[i], refund[i]]
        if bad[i]:
            k = bad_kind[i]
            if k == 0:
                row[2] = "abc"
            elif k == 1:
                row[2] = f"-{paid_amount[i]}" if not unpaid_l[i] else "-0.01"
            else:
                # Taobao rows carry no openid: a broken time takes that slot too.
                row[7] = _BAD_TIMES[bad_time[i]]
        rows.append(row)
        if upd[i]:
            u_row = list(row)
            u_row[3] = V.TB_CLOSED
            u_row[9] = u_row[2]
            update_rows.append(u_row)
    truth = [("orders", f"taobao/{t}", P.pid[b]) for t, b in zip(tid, buyers)]
    return o, rows, update_rows, truth


# --- the other sources ------------------------------------------------------------------------------------

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # compact, as the WeChat APIs answer


def _dumps(obj) -> str:
    return _JSON.encode(obj)


def _oa_followers(rng, P: _Persons, noise: NoiseRates):
    who = np.flatnonzero(P.has_oa)
    who = who[np.lexsort((who, P.oa_t[who]))]
    k = len(who)
    unfollowed = (P.entry[who] != V.ENTRY_OA_QR) & (rng.random(k) < P_UNFOLLOWED)
    later_qr = rng.random(k) < 0.35
    later_code = rng.integers(0, len(V.LATER_TOUCH_CODES), k)
    scene_names = [s for s, _ in V.OTHER_SCENES]
    scene = rng.choice(len(scene_names), k, p=_choice_weights(V.OTHER_SCENES))
    lang = rng.choice(3, k, p=[0.95, 0.03, 0.02])
    n_tags = rng.choice(3, k, p=[0.7, 0.2, 0.1])
    tag_pick = rng.integers(0, len(V.OA_TAG_IDS), (k, 2))
    remark = rng.random(k) < 0.05
    reexp = rng.random(k) < noise.follower_reexport
    reexp_unf = rng.random(k) < noise.reexport_unfollow
    lines, relines, truth = [], [], []
    for i, p in enumerate(who.tolist()):
        openid = P.oa_openid[p]
        truth.append(("oa_followers", f"{V.OA_APPID}/{openid}", P.pid[p]))
        e = P.entry[p]
        if e in (V.ENTRY_OA_QR, V.ENTRY_OA_OTHER):
            P.entry_record[p] = f"oa_followers/{V.OA_APPID}/{openid}"
        if unfollowed[i]:
            lines.append(_dumps({"subscribe": 0, "openid": openid}))
            continue
        if e == V.ENTRY_OA_QR:
            sc, code = "ADD_SCENE_QR_CODE", V.CHANNELS[P.channel[p]].code
        elif e != V.ENTRY_OA_OTHER and later_qr[i]:
            sc, code = "ADD_SCENE_QR_CODE", V.LATER_TOUCH_CODES[later_code[i]]
        else:
            sc, code = scene_names[scene[i]], ""
        rec = {"subscribe": 1, "openid": openid}
        if P.oa_bound[p]:
            rec["unionid"] = P.unionid[p]
        tags = sorted({V.OA_TAG_IDS[t] for t in tag_pick[i, : n_tags[i]].tolist()})
        rec.update({"language": ("zh_CN", "en", "zh_TW")[lang[i]], "subscribe_time": int(P.oa_t[p]) - CHINA_OFFSET,
                    "remark": str(P.name[p]) if remark[i] else "", "groupid": 0, "tagid_list": tags,
                    "subscribe_scene": sc, "qr_scene": 0, "qr_scene_str": code})
        line = _dumps(rec)
        lines.append(line)
        if reexp[i]:
            relines.append(_dumps({"subscribe": 0, "openid": openid}) if reexp_unf[i] else line)
    return lines, relines, truth


def _wecom(rng, P: _Persons, win: _Window, noise: NoiseRates, G: _Globals):
    """One externalcontact/get response per contact; one follow_user entry per staff account that added them.

    A contact's entries: the person's own WeCom add (the entry add, or a later one), a second salesperson now and
    then, and the store account's add when they registered as a member at a store counter.
    """
    who = np.flatnonzero(P.has_wecom | P.store_add)
    first_t = np.where(P.store_add & P.has_wecom, np.minimum(P.wecom_t, P.store_add_t), P.wecom_t)
    who = who[np.lexsort((who, first_t[who]))]
    k = len(who)
    own = P.has_wecom[who]
    second = own & (rng.random(k) < P_SECOND_STAFF)
    t2 = _lag(rng, P.wecom_t[who], 30, win.end_t)
    staff1 = rng.integers(0, len(V.STAFF), k)
    staff2 = (staff1 + rng.integers(1, len(V.STAFF), k)) % len(V.STAFF)
    aw_vals = [a for a, _ in V.LATER_ADD_WAYS]
    add_way_later = rng.choice(len(aw_vals), (k, 2), p=_choice_weights(V.LATER_ADD_WAYS))
    own_code = rng.random((k, 2)) < 0.5
    later_code = rng.integers(0, len(V.LATER_TOUCH_CODES), (k, 2))
    remark_name = rng.random((k, 3)) < 0.3
    # Column 0: the person's own add, 1: a second salesperson, 2: the store account at registration. A store or
    # parcel-card add asks the customer for their number (typed_phone); other staff note whichever they are given.
    ch_codes = np.array([V.CHANNELS[c].code for c in P.channel[who].tolist()], dtype=object)
    entry_add = P.entry[who] == V.ENTRY_WECOM
    asked = entry_add & np.isin(ch_codes, ["parcel_card", *V.STORE_STAFF])
    p_mobile = np.stack([np.where(asked, np.where(ch_codes == "parcel_card", P_PARCEL_REMARK, P_STORE_REMARK),
                                  P_REMARK_MOBILE),
                         np.full(k, P_REMARK_MOBILE), np.full(k, P_STORE_REMARK)], axis=1)
    has_mobile = rng.random((k, 3)) < p_mobile
    numbers = np.stack([np.where(asked, P.typed_phone[who], _pick_phones(rng, P, who)), _pick_phones(rng, P, who),
                        P.typed_phone[who]], axis=1).reshape(-1)
    mobiles = (np.array(_noisy_phones(rng, numbers, (JUNK, FORMAT), noise, G), dtype=object).reshape(k, 3)
               if k else np.empty((0, 3), dtype=object))
    gender_hidden = rng.random(k) < 0.4
    by_code = {c.code: c for c in V.CHANNELS}
    store_accounts = list(V.STORE_STAFF.values())
    store_codes = list(V.STORE_STAFF)
    lines, truth = [], []
    for i, p in enumerate(who.tolist()):
        ext = P.ext_id[p]
        contact = {"external_userid": ext, "name": P.nickname[p], "type": int(P.ext_type[p]),
                   "gender": 0 if gender_hidden[i] else int(P.gender[p])}
        if P.wecom_bound[p]:
            contact["unionid"] = P.unionid[p]
        ch = V.CHANNELS[P.channel[p]]
        adds = []  # (createtime local, staff, add_way, state, column)
        if own[i]:
            for j in range(2 if second[i] else 1):
                if j == 0 and entry_add[i]:
                    add_way, state = ch.add_way, ch.code
                    staff = V.STORE_STAFF.get(ch.code, V.STAFF[staff1[i]])
                    P.entry_record[p] = f"wecom_contacts/{ext}/{staff}"
                else:
                    add_way = aw_vals[add_way_later[i, j]]
                    staff = V.STAFF[staff1[i] if j == 0 else staff2[i]]
                    if add_way in (1, 16):
                        state = ch.code if (own_code[i, j] and ch.code) else V.LATER_TOUCH_CODES[later_code[i, j]]
                    else:
                        state = ""
                adds.append((int(P.wecom_t[p] if j == 0 else max(t2[i], P.wecom_t[p])), staff, add_way, state, j))
        if P.store_add[p]:
            si = int(P.store[p])
            adds.append((int(P.store_add_t[p]), store_accounts[si], 1, store_codes[si], 2))
        follows = []
        for t, staff, add_way, state, j in sorted(adds):
            tag = by_code[state].tag if state in by_code else "其他"
            fu = {"userid": staff, "remark": str(P.name[p]) if remark_name[i, j] else "", "description": "",
                  "createtime": t - CHINA_OFFSET,
                  "tags": [{"group_name": "来源", "tag_name": tag, "type": 1}] if state else [],
                  "remark_mobiles": [mobiles[i, j]] if has_mobile[i, j] else [], "add_way": int(add_way)}
            # The API leaves `state` out when the add did not come through a coded QR code or link.
            if state:
                fu["state"] = state
            follows.append(fu)
            truth.append(("wecom_contacts", f"{ext}/{staff}", P.pid[p]))
        lines.append(_dumps({"errcode": 0, "errmsg": "ok", "external_contact": contact, "follow_user": follows}))
    return lines, truth


def _mp_logins(rng, P: _Persons, orders: _Orders, win: _Window, noise: NoiseRates, G: _Globals, C: _Counters,
               activity: float):
    who = np.flatnonzero(P.has_mp)
    extra = rng.geometric(_repeat_p(0.45, activity), len(who)) - 1
    extra_who = np.repeat(who, extra)
    extra_t = P.mp_t[extra_who] + (rng.random(len(extra_who)) * (win.end_t - P.mp_t[extra_who])).astype(np.int64)
    order_login = np.maximum(orders.created - rng.integers(60, 1800, len(orders.created)), P.mp_t[orders.buyer])
    # the session in which a member opened the member card, when it was not their first login
    reg_who = np.flatnonzero(P.reg_login_t > P.mp_t)
    person = np.concatenate([who, orders.buyer, extra_who, reg_who])
    t = np.concatenate([P.mp_t[who], order_login, extra_t, P.reg_login_t[reg_who]])
    order = np.lexsort((person, t))
    person, t = person[order], t[order]
    m = len(person)
    ids = C.take("log", m)
    log_id = (7_000_000_000 + ids).tolist()
    phone = _noisy_phones(rng, P.phone1[person], (FORMAT,), noise, G)
    times = format_local(t)
    bad, bad_kind = _malformed_mask(rng, m, noise)
    bad_time = rng.integers(0, len(_BAD_TIMES), m).tolist()
    rows, truth = [], []
    first_seen = set()
    for i, p in enumerate(person.tolist()):
        row = [str(log_id[i]), V.MP_APPID, P.mp_openid[p], P.unionid[p] if P.mp_bound[p] else "",
               phone[i] if P.phone_auth[p] else "", times[i]]
        if bad[i]:
            if bad_kind[i] < 2:
                row[2] = ""
            else:
                row[5] = _BAD_TIMES[bad_time[i]]
        rows.append(row)
        truth.append(("mp_logins", row[0], P.pid[p]))
        if P.entry[p] == V.ENTRY_MP and p not in first_seen:
            P.entry_record[p] = f"mp_logins/{row[0]}"
        first_seen.add(p)
    return rows, truth


def _crm(rng, P: _Persons, mp: _Orders, tb: _Orders, win: _Window, noise: NoiseRates, G: _Globals,
         C: _Counters):
    net = np.zeros(P.n, dtype=np.int64)
    for o in (mp, tb):
        paid = o.paid >= 0
        np.add.at(net, o.buyer[paid], (o.amount - o.refund)[paid])
    who = np.flatnonzero(P.has_crm)
    k = len(who)
    offline = np.where(rng.random(k) < 0.5, 0, np.round(rng.lognormal(np.log(30_000), 1.0, k))).astype(np.int64)
    spend = net[who] + offline
    second = (P.phone2[who] > 0) & (rng.random(k) < noise.second_card)
    who2 = who[second]
    t2 = _lag(rng, P.crm_t[who2], 60, win.end_t)
    person = np.concatenate([who, who2])
    reg_t = np.concatenate([P.crm_t[who], t2])
    spend_all = np.concatenate([spend, np.where(rng.random(len(who2)) < 0.7, 0,
                                                rng.integers(1_000, 20_000, len(who2)))])
    is_second = np.concatenate([np.zeros(k, bool), np.ones(len(who2), bool)])
    order = np.lexsort((person, reg_t))
    person, reg_t, spend_all, is_second = person[order], reg_t[order], spend_all[order], is_second[order]
    m = len(person)
    ids = C.take("member", m)
    card = (8_800_000_000_000 + ids + 1).tolist()
    # A member-card registration stores the number WeChat's phone authorization handed over (a second card: the
    # other number picked in the same dialog); staff in a store type in whatever the customer tells them.
    typed = P.crm_via[person] == CRM_STORE
    phones = np.where(is_second, P.phone2[person], np.where(typed, P.typed_phone[person], P.phone1[person]))
    phone_s = np.empty(m, dtype=object)
    ti, ai = np.flatnonzero(typed), np.flatnonzero(~typed)
    phone_s[ti] = _noisy_phones(rng, phones[ti], (JUNK, MASKED, FORMAT), noise, G)
    phone_s[ai] = _noisy_phones(rng, phones[ai], (FORMAT,), noise, G)
    phone_s = phone_s.tolist()
    tier_idx = np.searchsorted(np.array([t for _, t in V.CRM_TIERS]) * 100, spend_all, side="right") - 1
    # The CRM's declared tier is recomputed monthly: some members still show the tier below.
    tier_idx = np.where((rng.random(m) < 0.1) & (tier_idx > 0), tier_idx - 1, tier_idx)
    points = (spend_all // 100 * rng.uniform(0.6, 1.0, m)).astype(np.int64) + 100
    show_bday = rng.random(m) < 0.75
    gender_unknown = rng.random(m) < 0.1
    fill_channel = rng.random(m) < P_CRM_CHANNEL
    bdays = format_days(P.birthday[person])
    regs = format_local(reg_t)
    spend_s = fen_to_yuan(spend_all)
    bad, bad_kind = _malformed_mask(rng, m, noise)
    bad_time = rng.integers(0, len(_BAD_TIMES), m).tolist()
    rows, truth = [], []
    for i, p in enumerate(person.tolist()):
        ch = V.CHANNELS[P.channel[p]]
        if is_second[i]:
            source = ""
        elif P.entry[p] == V.ENTRY_CRM:
            source = ch.code
        else:
            source = ch.code if fill_channel[i] else ""
        gender = "未知" if gender_unknown[i] else V.CRM_GENDER[int(P.gender[p])]
        row = [str(card[i]), phone_s[i], str(P.name[p]), gender,
               bdays[i] if show_bday[i] else "", V.CRM_TIERS[int(tier_idx[i])][0], str(int(points[i])), regs[i],
               spend_s[i], source]
        if bad[i]:
            k2 = bad_kind[i]
            if k2 <= 1:
                row[4] = f"{bdays[i][:4]}-02-30"
            elif k2 == 2:
                row[8] = "abc"
            else:
                row[7] = _BAD_TIMES[bad_time[i]]
        rows.append(row)
        truth.append(("crm_members", row[0], P.pid[p]))
        if P.entry[p] == V.ENTRY_CRM and not is_second[i]:
            P.entry_record[p] = f"crm_members/{row[0]}"
    return rows, truth


def _referrals(rng, P: _Persons, C: _Counters):
    who = np.flatnonzero(P.inviter >= 0)
    who = who[np.lexsort((who, P.join_t[who]))]
    ids = C.take("invite", len(who))
    times = format_local(P.join_t[who])
    rows, truth = [], []
    for i, p in enumerate(who.tolist()):
        inv = int(P.inviter[p])
        invite_id = f"inv{ids[i] + 1:09d}"
        year, month = int(times[i][:4]), int(times[i][5:7])
        rows.append([invite_id, V.MP_APPID, P.mp_openid[inv], P.unionid[inv] if P.mp_bound[inv] else "",
                     P.mp_openid[p], P.unionid[p] if P.mp_bound[p] else "", times[i],
                     f"fission_{year}q{(month - 1) // 3 + 1}"])
        truth.append(("referrals", f"{invite_id}/inviter", P.pid[inv]))
        truth.append(("referrals", f"{invite_id}/invitee", P.pid[p]))
        P.entry_record[p] = f"referrals/{invite_id}/invitee"
    return rows, truth


def _person_rows(P: _Persons):
    gender = {0: "unknown", 1: "male", 2: "female"}
    bdays = format_days(P.birthday)
    joins = format_local(P.join_t)
    rows = []
    for i in range(P.n):
        prov, city, _ = V.REGIONS[P.region[i]]
        fam, inv = int(P.family_of[i]), int(P.inviter[i])
        rows.append([P.pid[i], str(P.name[i]), gender[int(P.gender[i])], bdays[i], prov, city, str(P.phone1[i]),
                     str(P.phone2[i]) if P.phone2[i] else "", P.pid[fam] if fam >= 0 else "", joins[i],
                     V.CHANNELS[P.channel[i]].code, V.ENTRY_NAMES[P.entry[i]], P.entry_record[i],
                     P.pid[inv] if inv >= 0 else "", CRM_VIA_NAMES[P.crm_via[i]]])
    return rows


PERSON_HEADER = ["person_id", "name", "gender", "birthday", "province", "city", "phone1", "phone2",
                 "shares_phone_of", "joined_at", "channel", "entry", "entry_record", "inviter", "crm_registration"]


# --- orchestration ----------------------------------------------------------------------------------------

def _file_names(start: date, end: date, reexport: date) -> dict[str, str]:
    s, e, r = start.strftime("%Y%m%d"), end.strftime("%Y%m%d"), reexport.strftime("%Y%m%d")
    return {
        "oa": f"landing/oa_followers/user_info_{e}.jsonl",
        "oa_re": f"landing/oa_followers/user_info_{r}.jsonl",
        "mp_logins": f"landing/mp_logins/login_log_{s}_{e}.csv",
        "wecom": f"landing/wecom_contacts/external_contacts_{e}.jsonl",
        "mp_orders": f"landing/orders_miniprogram/orders_{s}_{e}.csv",
        "mp_orders_re": f"landing/orders_miniprogram/orders_update_{r}.csv",
        "tb_orders": f"landing/orders_taobao/ExportOrderList{e}.csv",
        "tb_orders_re": f"landing/orders_taobao/ExportOrderList{r}.csv",
        "crm": f"landing/crm_members/members_{e}.csv",
        "referrals": f"landing/referrals/invites_{s}_{e}.csv",
        "truth": "truth/records.csv.gz",
        "persons": "truth/persons.csv.gz",
    }


def _clear_previous(out: Path) -> None:
    """Remove what an earlier run wrote here (listed in its manifest), so no stale file survives a new run."""
    manifest = out / "manifest.json"
    if manifest.exists():
        try:
            old = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if old.get("generator") == "samplegen":
            for rel in old.get("files", {}):
                target = out / rel
                if target.is_file():
                    target.unlink()
            manifest.unlink()
            return
    landing = out / "landing"
    if landing.exists() and any(p.is_file() for p in landing.rglob("*")):
        raise FileExistsError(f"{landing} holds files not written by samplegen; refusing to mix them in")


def generate(out: str | os.PathLike, users: int, seed: int, start: date = DEFAULT_START, end: date = DEFAULT_END,
             noise: NoiseRates | None = None, referral_rate: float = DEFAULT_REFERRAL_RATE,
             activity: float = DEFAULT_ACTIVITY, progress=None) -> dict:
    """Write the landing folder, the ground truth and manifest.json under `out`; return the manifest.

    `activity` multiplies the mean number of repeat events per person: mini-program logins after the first, and
    orders after a buyer's first (with the rows orders bring: their logins, refunds, later updates).
    """
    noise = noise or NoiseRates()
    if users < 1:
        raise ValueError("users must be >= 1")
    if users > 100_000_000:
        raise ValueError("users must be <= 100,000,000 (the id spaces are sized for that)")
    if end < start:
        raise ValueError("end must not be before start")
    if not 0.0 <= referral_rate <= 1.0:
        raise ValueError("referral_rate must be in [0, 1]")
    if not 0.0 < activity <= MAX_ACTIVITY:  # (NaN fails this too)
        raise ValueError(f"activity must be > 0 and <= {MAX_ACTIVITY:g}, got {activity!r}")
    activity = float(activity)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)

    reexport = end + timedelta(days=REEXPORT_AFTER_DAYS)
    win = _Window(_local_seconds(start), _local_seconds(end) + DAY - 1, _local_seconds(reexport))
    G = _Globals.from_seed(seed)
    C = _Counters()
    names = _file_names(start, end, reexport)
    crlf = "\r\n"  # the Taobao and CRM exports come out of Windows tools
    files = {
        "oa": JsonlOut(out / names["oa"]),
        "oa_re": JsonlOut(out / names["oa_re"]),
        "mp_logins": CsvOut(out / names["mp_logins"], V.MP_LOGIN_HEADER),
        "wecom": JsonlOut(out / names["wecom"]),
        "mp_orders": CsvOut(out / names["mp_orders"], V.MP_ORDER_HEADER),
        "mp_orders_re": CsvOut(out / names["mp_orders_re"], V.MP_ORDER_HEADER),
        "tb_orders": CsvOut(out / names["tb_orders"], V.TB_HEADER, encoding="gbk", lineterminator=crlf),
        "tb_orders_re": CsvOut(out / names["tb_orders_re"], V.TB_HEADER, encoding="gbk", lineterminator=crlf),
        "crm": CsvOut(out / names["crm"], V.CRM_HEADER, encoding="utf-8-sig", lineterminator=crlf),
        "referrals": CsvOut(out / names["referrals"], V.REFERRAL_HEADER),
        "truth": CsvOut(out / names["truth"], ["source", "record_id", "person_id"], gz=True),
        "persons": CsvOut(out / names["persons"], PERSON_HEADER, gz=True),
    }
    try:
        n_chunks = (users + CHUNK_SIZE - 1) // CHUNK_SIZE
        for chunk in range(n_chunks):
            g0 = chunk * CHUNK_SIZE
            n = min(CHUNK_SIZE, users - g0)
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, chunk)))
            P = _make_persons(rng, g0, n, win, start, G, noise, referral_rate)
            mp, mp_rows, mp_re, mp_truth = _mp_orders(rng, P, win, noise, G, C, activity)
            tb, tb_rows, tb_re, tb_truth = _tb_orders(rng, P, win, noise, G, C, activity)
            oa_lines, oa_re, oa_truth = _oa_followers(rng, P, noise)
            wc_lines, wc_truth = _wecom(rng, P, win, noise, G)
            login_rows, login_truth = _mp_logins(rng, P, mp, win, noise, G, C, activity)
            crm_rows, crm_truth = _crm(rng, P, mp, tb, win, noise, G, C)
            ref_rows, ref_truth = _referrals(rng, P, C)

            files["oa"].write(oa_lines)
            files["oa_re"].write(oa_re)
            files["mp_logins"].write(login_rows)
            files["wecom"].write(wc_lines)
            files["mp_orders"].write(mp_rows)
            files["mp_orders_re"].write(mp_re)
            files["tb_orders"].write(tb_rows)
            files["tb_orders_re"].write(tb_re)
            files["crm"].write(crm_rows)
            files["referrals"].write(ref_rows)
            for t in (oa_truth, login_truth, wc_truth, mp_truth, tb_truth, crm_truth, ref_truth):
                files["truth"].write(t)
            files["persons"].write(_person_rows(P))
            if progress:
                progress(g0 + n, users)
    finally:
        for f in files.values():
            f.close()

    manifest = {
        "generator": "samplegen",
        "format_version": FORMAT_VERSION,
        "users": users,
        "seed": seed,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "reexport_date": reexport.isoformat(),
        "chunk_size": CHUNK_SIZE,
        "referral_rate": referral_rate,
        "activity": activity,
        "noise": noise.as_dict(),
        "apps": {"oa_appid": V.OA_APPID, "mp_appid": V.MP_APPID, "wecom_corp_id": V.WECOM_CORP_ID,
                 "crm_name": V.CRM_NAME},
        "files": {names[k]: {"rows": files[k].rows, "bytes": (out / names[k]).stat().st_size}
                  for k in sorted(files, key=lambda k: names[k])},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest
