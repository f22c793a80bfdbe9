"""Headline growth numbers on the bundled sample brand, recomputed independently of dbt.

The session fixture `sample_warehouse` (tests/dbt/conftest.py) runs ingest and identity (Dagster assets, as
tests/e2e does) on data/sample/landing into a temporary warehouse, then `dbt build` on it. The tests read the landing files again with plain polars, attach
users through identity.record_map only, and recompute net GMV by credited channel and the member tier counts
with their own code, following the rules in docs/models.md. Nothing from staging or the marts feeds the
recomputation.
"""

from __future__ import annotations

import io
import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest


pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_LANDING = REPO_ROOT / "data" / "sample" / "landing"
TIME = "%Y-%m-%d %H:%M:%S"
ATTRIBUTION_WINDOW = timedelta(days=10)  # var attribution_window_days
TIERS = [("diamond", 500_000), ("gold", 300_000), ("silver", 100_000), ("ordinary", 0)]  # fen, member_tiers seed


@pytest.fixture(scope="module")
def warehouse(sample_warehouse) -> Path:
    """The sample built once per session (tests/dbt/conftest.py), shared with the analyst-query tests."""
    return sample_warehouse


def _query(database: Path, sql: str) -> pl.DataFrame:
    # Not read_only: dbt-duckdb keeps its connection to the file open in this process (see DbtRun.query).
    with duckdb.connect(str(database)) as con:
        return con.sql(sql).pl()


# --- reading the landing files, independently of ingest ----------------------------------------


def _csv(path: Path, encoding: str = "utf-8-sig") -> pl.DataFrame:
    text = path.read_bytes().decode(encoding)
    # every column as text, empty cells as "" (not NULL), as the exports mean them
    return pl.read_csv(io.BytesIO(text.encode()), infer_schema=False).with_columns(pl.all().fill_null(""))


def _files(folder: str) -> list[Path]:
    return sorted((SAMPLE_LANDING / folder).iterdir())  # exports are named by date: later files sort last


def _latest(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """The last row per key in file order, files read in name order: the latest export wins."""
    return frame.with_row_index("_order").sort("_order").unique(key, keep="last").drop("_order")


def _strict_time(column: str) -> pl.Expr:
    return pl.col(column).str.strptime(pl.Datetime("us"), TIME, strict=False)


def _epoch_china(seconds: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(seconds=seconds, hours=8)


def _orders() -> pl.DataFrame:
    """One row per order in its latest export: record_id, created_at, paid_at, net_fen (GMV rule of fct_orders)."""
    mp = pl.concat([_csv(p, "utf-8") for p in _files("orders_miniprogram")])
    mp = mp.with_columns(
        record_id="miniprogram_shop/" + pl.col("order_id"),
        created_at=_strict_time("created_at"),
        paid_at=pl.when(pl.col("paid_at") != "").then(_strict_time("paid_at")),
        pay=pl.col("pay_amount_fen").cast(pl.Int64, strict=False),
        refund=pl.col("refund_amount_fen").cast(pl.Int64, strict=False),
        paid=~pl.col("order_status").is_in(["WAIT_PAY", "CANCELLED"]) & (pl.col("paid_at") != ""),
        valid=pl.col("openid") != "",
    )
    tb = pl.concat([_csv(p, "gb18030") for p in _files("orders_taobao")])

    def fen(column: str) -> pl.Expr:
        return (pl.col(column).cast(pl.Decimal(18, 2), strict=False) * 100).cast(pl.Int64)

    tb = tb.with_columns(
        record_id="taobao/" + pl.col("订单编号"),
        created_at=_strict_time("订单创建时间"),
        paid_at=pl.when(pl.col("订单付款时间") != "").then(_strict_time("订单付款时间")),
        pay=fen("买家实际支付金额"),
        refund=fen("退款金额"),
        paid=pl.col("订单付款时间") != "",
        valid=pl.lit(True),
    )
    columns = ["record_id", "created_at", "paid_at", "pay", "refund", "paid", "valid"]
    orders = pl.concat([mp.select(columns), tb.select(columns)])
    # Rows ingest must quarantine: unparseable times or amounts, negative amounts, missing openid.
    orders = orders.filter(
        pl.col("valid") & pl.col("created_at").is_not_null() & (pl.col("pay") >= 0) & (pl.col("refund") >= 0)
        & (pl.col("paid_at").is_not_null() | ~pl.col("paid"))
    )
    orders = _latest(orders, "record_id")
    return orders.with_columns(
        net_fen=pl.when(pl.col("paid")).then(pl.max_horizontal(pl.col("pay") - pl.col("refund"), 0)).otherwise(0),
    ).select("record_id", "created_at", "paid_at", "paid", "net_fen")


def _touches() -> pl.DataFrame:
    """Dated records with kind, time and channel code: source, record_id, kind, at, code, invite_id."""
    rows = []
    followers: dict[str, dict] = {}
    for path in _files("oa_followers"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            state = followers.setdefault(rec["openid"], {"first": None, "profile": None})
            if rec.get("subscribe") == 1:
                at = _epoch_china(rec["subscribe_time"])
                state["first"] = at if state["first"] is None else min(state["first"], at)
                state["profile"] = rec  # the latest export in which they still followed
    for openid, state in followers.items():
        if state["first"] is not None:
            profile = state["profile"]
            code = (profile.get("qr_scene_str") or "").strip() or profile.get("subscribe_scene") or None
            rows.append(("oa_followers", f"wxoa0000000demo01/{openid}", "oa_follow", state["first"], code, None))
    for path in _files("wecom_contacts"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            ext = rec["external_contact"]["external_userid"]
            for follow in rec.get("follow_user") or []:
                rows.append(("wecom_contacts", f"{ext}/{follow['userid']}", "wecom_add",
                             _epoch_china(follow["createtime"]), (follow.get("state") or "").strip() or None, None))
    crm = pl.concat([_csv(p) for p in _files("crm_members")]).with_columns(
        at=_strict_time("注册时间"),
        birthday_ok=(pl.col("生日") == "") | pl.col("生日").str.strptime(pl.Date, "%Y-%m-%d", strict=False).is_not_null(),
    ).filter(pl.col("at").is_not_null() & pl.col("birthday_ok"))
    for member, at, code in _latest(crm, "会员卡号").select("会员卡号", "at", "来源渠道").iter_rows():
        rows.append(("crm_members", member, "crm_registration", at, code.strip() or None, None))
    logins = pl.concat([_csv(p, "utf-8") for p in _files("mp_logins")]).with_columns(at=_strict_time("login_time"))
    logins = logins.filter(pl.col("at").is_not_null() & (pl.col("openid") != ""))
    for log_id, at in _latest(logins, "log_id").select("log_id", "at").iter_rows():
        rows.append(("mp_logins", log_id, "mp_login", at, None, None))
    invites = pl.concat([_csv(p, "utf-8") for p in _files("referrals")]).with_columns(at=_strict_time("invited_at"))
    for invite_id, at in _latest(invites, "invite_id").select("invite_id", "at").iter_rows():
        rows.append(("referrals", f"{invite_id}/invitee", "referral_received", at, None, invite_id))
        rows.append(("referrals", f"{invite_id}/inviter", "referral_sent", at, None, invite_id))
    return pl.DataFrame(rows, orient="row", schema={
        "source": pl.String, "record_id": pl.String, "kind": pl.String, "at": pl.Datetime("us"),
        "code": pl.String, "invite_id": pl.String,
    })


TIE_RANK = {"referral_received": 1, "wecom_add": 2, "oa_follow": 3, "crm_registration": 4, "mp_login": 5}


def _credited_channels(touches: pl.DataFrame, record_map: pl.DataFrame) -> dict[str, str]:
    """user_id -> credited channel code: first acquisition touch (10-day window for uncoded ones), referred
    people credited to their root inviter's own channel."""
    touches = touches.join(record_map, on=["source", "record_id"], how="inner")
    inviter_of_invite = dict(
        touches.filter(pl.col("kind") == "referral_sent").select("invite_id", "user_id").iter_rows())
    by_user: dict[str, list] = {}
    for user, kind, at, record_id, code, invite_id in touches.select(
            "user_id", "kind", "at", "record_id", "code", "invite_id").iter_rows():
        if kind not in TIE_RANK:
            continue
        inviter = inviter_of_invite.get(invite_id) if kind == "referral_received" else None
        if kind == "referral_received" and (inviter is None or inviter == user):
            continue  # a self-invite is not being brought by someone else
        by_user.setdefault(user, []).append((at, TIE_RANK[kind], record_id, kind, code, inviter))

    own: dict[str, str] = {}
    inviter_of: dict[str, str] = {}
    for user, items in by_user.items():
        items.sort(key=lambda t: t[:3])
        first = items[0]
        if first[3] == "referral_received":
            inviter_of[user] = first[5]
            continue
        if first[4] is None:
            follow_up = [t for t in items
                         if t[3] != "referral_received" and t[4] is not None and t[0] <= first[0] + ATTRIBUTION_WINDOW]
            if follow_up:
                first = follow_up[0]
        own[user] = first[4] or "organic"

    def credited(user: str) -> str:
        seen = {user}
        while user in inviter_of:
            user = inviter_of[user]
            if user in seen:
                return "(referral cycle)"
            seen.add(user)
        return own.get(user, "(none)")

    users = record_map["user_id"].unique().to_list()
    return {user: (own[user] if user in own else credited(user) if user in inviter_of else "(none)")
            for user in users}


@pytest.fixture(scope="module")
def recomputed(warehouse):
    record_map = _query(warehouse, "select source, record_id, user_id from identity.record_map")
    orders = _orders().join(record_map.filter(pl.col("source") == "orders").drop("source"), on="record_id",
                            how="left")
    touches = _touches()
    return {"record_map": record_map, "orders": orders, "touches": touches,
            "channels": _credited_channels(touches, record_map)}


def test_every_recomputed_order_is_a_resolved_record(recomputed, warehouse):
    orders = recomputed["orders"]
    assert orders["user_id"].null_count() == 0  # the same rows as ingest kept (quarantine rules agree)
    assert orders.height == _query(warehouse, "select count(*) as n from marts.fct_orders")["n"][0]


def test_net_gmv_by_channel_matches_the_marts(recomputed, warehouse):
    channels = pl.DataFrame(list(recomputed["channels"].items()), schema=["user_id", "channel_code"], orient="row")
    expected = (
        recomputed["orders"].join(channels, on="user_id", how="left")
        .group_by("channel_code").agg(pl.col("net_fen").sum())
    )
    expected = {code: Decimal(fen) / 100 for code, fen in expected.iter_rows()}
    assert len(expected) >= 10 and sum(expected.values()) > 100_000
    # unknown codes in the sample stay visible as their own channel
    assert {"qr_test_01", "zz_old_2019", "tmp0418", "parcel_card", "organic"} <= set(expected)

    from_orders = dict(_query(warehouse, "select channel_code, sum(net_amount) from marts.fct_orders group by 1")
                       .iter_rows())
    from_funnel = dict(_query(warehouse, "select channel_code, sum(net_gmv) from marts.fct_gmv_funnel_cohort "
                                         "group by 1 having sum(net_gmv) <> 0 or true").iter_rows())
    from_monthly = dict(_query(warehouse, "select channel_code, sum(net_gmv) from marts.fct_gmv_funnel_monthly "
                                          "group by 1").iter_rows())
    assert from_orders == expected
    assert {k: v for k, v in from_funnel.items() if k in expected} == expected
    assert {k: v for k, v in from_monthly.items() if k in expected} == expected
    assert all(v == 0 for k, v in from_funnel.items() if k not in expected)

    # per person, not only per channel
    users = _query(warehouse, "select user_id, first_touch_channel_code from marts.dim_users")
    assert dict(users.iter_rows()) == recomputed["channels"]


def test_tier_counts_match_the_marts(recomputed, warehouse):
    orders, touches, record_map = recomputed["orders"], recomputed["touches"], recomputed["record_map"]
    dated = pl.concat([
        touches.join(record_map, on=["source", "record_id"]).select("user_id", "at"),
        orders.select("user_id", pl.col("created_at").alias("at")),
    ])
    latest = max(dated["at"].max(), orders["paid_at"].max())
    as_of = latest.date()
    assert _query(warehouse, "select distinct as_of_date from marts.dim_users")["as_of_date"].to_list() == [as_of]

    window_start = datetime.combine(as_of - timedelta(days=364), datetime.min.time())
    window_end = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
    spend = dict(
        orders.filter(pl.col("paid") & (pl.col("paid_at") >= window_start) & (pl.col("paid_at") < window_end))
        .group_by("user_id").agg(pl.col("net_fen").sum()).iter_rows()
    )
    seen = set(dated.filter(pl.col("at") < window_end)["user_id"].unique().to_list())
    expected: dict[str, int] = {}
    for user in seen:
        fen = spend.get(user, 0)
        tier = next(code for code, minimum in TIERS if fen >= minimum)
        expected[tier] = expected.get(tier, 0) + 1
    assert expected.get("silver", 0) > 0

    got = dict(_query(warehouse, "select current_tier, count(*) from marts.dim_users "
                                 "where current_tier is not null group by 1").iter_rows())
    assert got == expected
    # the last month of the monthly status table is the same standing
    last_month = dict(_query(warehouse, "select tier_code, count(*) from marts.fct_user_monthly_status "
                                        "where snapshot_date = (select max(snapshot_date) from marts.fct_user_monthly_status) "
                                        "group by 1").iter_rows())
    assert last_month == expected


def test_growth_marts_hold_their_invariants_on_the_sample(warehouse):
    total = _query(warehouse, "select sum(net_amount) as v from marts.fct_orders")["v"][0]
    for relation, column in [("dim_users", "lifetime_net_gmv"), ("fct_gmv_funnel_cohort", "net_gmv"),
                             ("fct_gmv_funnel_monthly", "net_gmv"), ("fct_segment_counts", "net_gmv")]:
        assert _query(warehouse, f"select sum({column}) as v from marts.{relation}")["v"][0] == total, relation
    # the month-over-month effects, summed over channels, explain the brand's monthly change
    change = _query(warehouse, """
        select month_start, sum(net_gmv_change) as change,
               sum(coalesce(traffic_effect, 0) + coalesce(referral_effect, 0) + coalesce(conversion_effect, 0)
                   + coalesce(frequency_effect, 0) + coalesce(aov_effect, 0) + undecomposed_change) as explained
        from marts.fct_gmv_change_monthly group by 1""")
    assert change.height >= 11
    for _, delta, explained in change.iter_rows():
        assert abs(float(delta) - explained) < 0.01
    stages = set(_query(warehouse, "select distinct lifecycle_stage from marts.dim_users "
                                   "where lifecycle_stage is not null")["lifecycle_stage"].to_list())
    assert stages == {"prospect", "new", "active", "silent", "churned"}
    assert _query(warehouse, "select count(*) as n from marts.fct_member_tier_changes")["n"][0] > 0
