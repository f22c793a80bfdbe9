"""Growth marts (issue 5) on the hand-written warehouse in dbt_warehouse.py.

Expected values are worked out by hand from dbt_warehouse.RAW_ROWS. as_of_date defaults to the latest date in
the data: Dave's MP004, created and paid on 2024-04-20.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from dbt_warehouse import ALICE, BOB, CAROL, DAVE, ERIN, FRANK

AS_OF = date(2024, 4, 20)


def test_attribution(dbt_build):
    users = dbt_build.rows_by_key("marts.dim_users", "user_id")
    got = {
        u: (users[u]["acquisition_type"], users[u]["own_channel_code"], users[u]["first_touch_channel_code"],
            users[u]["first_touch_channel_group"], users[u]["cohort_month"])
        for u in users
    }
    assert got == {
        # The CRM card (source channel parcel_card, Jan 15) comes before the poster follow and WeCom add.
        ALICE: ("direct", "parcel_card", "parcel_card", "parcel", date(2024, 1, 1)),
        # OA follow with qr_scene_str; the cancelled Taobao order the next day changes nothing.
        BOB: ("direct", "store_qr_sh01", "store_qr_sh01", "offline", date(2024, 2, 1)),
        # First seen through a Taobao order (not an acquisition touch); the first acquisition touch is a login
        # without a code and no coded touch follows within 10 days.
        CAROL: ("direct", "organic", "organic", "organic", date(2024, 2, 1)),
        # The WeCom add by the live-stream acquisition link, after a Taobao order in February.
        DAVE: ("direct", "live_0312", "live_0312", "live", date(2024, 2, 1)),
        # Invited by Alice: credited to Alice's channel.
        ERIN: ("referred", None, "parcel_card", "parcel", date(2024, 3, 1)),
        FRANK: ("none", None, "(none)", "none", None),
    }
    assert (users[ERIN]["inviter_user_id"], users[ERIN]["root_inviter_user_id"], users[ERIN]["referral_depth"]) == (
        ALICE, ALICE, 1)
    assert users[ALICE]["inviter_user_id"] is None


def test_dim_users_demographics_tier_and_lifecycle(dbt_build):
    users = dbt_build.rows_by_key("marts.dim_users", "user_id")
    got = {
        u: (users[u]["gender"], users[u]["gender_source"], users[u]["age_band"], users[u]["region"],
            users[u]["crm_declared_tier"], users[u]["current_tier"], users[u]["lifecycle_stage"])
        for u in users
    }
    assert got == {
        # born 1990-05-01: 33 on 2024-04-20. Declared silver by the CRM, 39.90 yuan computed: ordinary.
        # Last paid order Mar 8 (43 days): active. One paid order each to 浙江 and 上海: the later one wins.
        ALICE: ("female", "crm", "25-34", "华东", "silver", "ordinary", "active"),
        BOB: ("unknown", None, "unknown", "unknown", None, "ordinary", "prospect"),  # only a cancelled order
        # Feb 25: 55 days. The unpaid 浙江 order does not count.
        CAROL: ("unknown", None, "unknown", "华南", None, "ordinary", "active"),
        DAVE: ("male", "wecom", "unknown", "西南", None, "ordinary", "active"),  # paid (then refunded) on Apr 20
        # first paid order Mar 21, exactly 30 days before as_of: no longer new. Its province "火星" is no province.
        ERIN: ("unknown", None, "unknown", "unknown", None, "ordinary", "active"),
        FRANK: ("unknown", None, "unknown", "unknown", None, None, None),  # never seen on a date
    }
    assert {u: users[u]["province"] for u in users} == {
        ALICE: "上海", BOB: None, CAROL: "广西", DAVE: "四川", ERIN: None, FRANK: None}
    assert {u["as_of_date"] for u in users.values()} == {AS_OF}
    assert users[DAVE]["current_trailing_365d_net_spend"] == Decimal("300.00")


def test_fct_orders_carry_the_buyers_channel(dbt_build):
    orders = dbt_build.rows_by_key("marts.fct_orders", "order_key")
    assert orders["miniprogram_shop/5001"]["channel_code"] == "parcel_card"  # Erin's, through Alice
    assert orders["miniprogram_shop/5001"]["acquisition_type"] == "referred"
    assert orders["taobao/5001"]["channel_code"] == "live_0312"
    assert orders["taobao/5001"]["cohort_month"] == date(2024, 2, 1)
    by_channel = dict(dbt_build.query(
        "select channel_code, sum(net_amount) from marts.fct_orders group by 1"))
    assert by_channel == {"parcel_card": Decimal("49.90"), "store_qr_sh01": Decimal("0.00"),
                          "organic": Decimal("200.00"), "live_0312": Decimal("300.00")}


def test_orders_keep_only_the_province_of_the_receiving_address(dbt_build):
    provinces = dict(dbt_build.query("select order_key, receiver_province from marts.fct_orders"))
    assert provinces == {
        "miniprogram_shop/MP001": "浙江", "miniprogram_shop/MP002": "上海", "miniprogram_shop/MP003": "浙江",
        "miniprogram_shop/MP004": None, "miniprogram_shop/5001": None,  # "火星" is not a province
        "taobao/TB001": None, "taobao/TB002": "广西", "taobao/5001": "四川",
    }
    staging_columns = {row[0] for row in dbt_build.query(
        "select column_name from information_schema.columns "
        "where table_schema = 'staging' and table_name = 'stg_shop__orders'")}
    assert "receiver_province" in staging_columns and "receiver_address" not in staging_columns


def test_cohort_funnel(dbt_build):
    rows = {
        (r[0], r[1]): r[2:]
        for r in dbt_build.query(
            "select channel_code, cohort_month, organic_users, users, buyers, paid_orders, net_gmv, "
            "referral_multiplier, conversion_rate, order_frequency, average_order_value, factors_defined, "
            "gmv_from_factors from marts.fct_gmv_funnel_cohort")
    }
    assert rows == {
        # Alice: two paid orders (one refunded in full), 39.90 yuan.
        ("parcel_card", date(2024, 1, 1)): (1, 1, 1, 2, Decimal("39.90"), 1.0, 1.0, 2.0, pytest.approx(19.95), True,
                                            pytest.approx(39.90)),
        # Erin alone: referred, so no organic traffic and no referral multiplier.
        ("parcel_card", date(2024, 3, 1)): (0, 1, 1, 1, Decimal("10.00"), None, 1.0, 1.0, 10.0, False, None),
        # Bob: no buyer, conversion 0, no frequency or order value.
        ("store_qr_sh01", date(2024, 2, 1)): (1, 1, 0, 0, Decimal("0.00"), 1.0, 0.0, None, None, False, None),
        ("organic", date(2024, 2, 1)): (1, 1, 1, 1, Decimal("200.00"), 1.0, 1.0, 1.0, 200.0, True, 200.0),
        ("live_0312", date(2024, 2, 1)): (1, 1, 1, 2, Decimal("300.00"), 1.0, 1.0, 2.0, 150.0, True, 300.0),
    }


def test_monthly_funnel_and_change(dbt_build):
    funnel = {
        (r[0], r[1]): r[2:]
        for r in dbt_build.query(
            "select channel_code, month_start, organic_users, users, buyers, paid_orders, net_gmv "
            "from marts.fct_gmv_funnel_monthly")
    }
    # Each channel from its first cohort month through April (as_of_date's month and the last order month).
    assert sorted(funnel) == sorted(
        [("parcel_card", date(2024, m, 1)) for m in (1, 2, 3, 4)]
        + [(c, date(2024, m, 1)) for c in ("store_qr_sh01", "organic", "live_0312") for m in (2, 3, 4)]
    )
    # March: Alice's MP001 (refunded) and MP002, Erin's first order; the pool now holds Erin too.
    assert funnel[("parcel_card", date(2024, 3, 1))] == (1, 2, 2, 3, Decimal("49.90"))
    assert funnel[("live_0312", date(2024, 4, 1))] == (1, 1, 1, 1, Decimal("0.00"))  # MP004, refunded

    change = {
        (r[0], r[1]): r[2:]
        for r in dbt_build.query(
            "select channel_code, month_start, net_gmv_change, is_decomposed, traffic_effect, referral_effect, "
            "conversion_effect, frequency_effect, aov_effect, undecomposed_change from marts.fct_gmv_change_monthly")
    }
    # Dave bought for 300 in February and nothing in March: all of the drop is conversion.
    assert change[("live_0312", date(2024, 3, 1))] == (Decimal("-300.00"), True, 0.0, 0.0, -300.0, 0.0, 0.0, 0.0)
    # parcel_card, March against February (no buyers in February): Erin joins the pool (referral multiplier
    # 1 -> 2), but with February's conversion of 0 that moves nothing; conversion explains all 49.90.
    assert change[("parcel_card", date(2024, 3, 1))] == (
        Decimal("49.90"), True, 0.0, 0.0, pytest.approx(49.90), 0.0, 0.0, 0.0)


def test_referral_marts(dbt_build):
    inviters = dbt_build.rows_by_key("marts.fct_referral_inviters", "user_id")
    assert set(inviters) == {ALICE}
    alice = inviters[ALICE]
    assert (alice["invites_sent"], alice["referred_users"], alice["referred_buyers"], alice["referred_net_gmv"],
            alice["fission_users"], alice["fission_depth"], alice["own_referral_depth"]) == (
        1, 1, 1, Decimal("10.00"), 1, 1, 0)
    cohorts = dbt_build.rows_by_key("marts.fct_referral_cohorts", "cohort_month")
    assert (cohorts[date(2024, 1, 1)]["k_factor"], cohorts[date(2024, 1, 1)]["referrals_made"]) == (1.0, 1)
    march = cohorts[date(2024, 3, 1)]
    assert (march["referred_users"], march["max_fission_depth"], march["referred_gmv_share"]) == (1, 1, 1.0)
    assert cohorts[date(2024, 2, 1)]["k_factor"] == 0.0


def test_ltv_curves(dbt_build):
    rows = {
        r[0]: r[1:]
        for r in dbt_build.query(
            "select days_since_first_seen, users, matured_users, cumulative_net_gmv, ltv_per_user, is_complete "
            "from marts.fct_ltv_curves where channel_code = 'parcel_card' and cohort_month = '2024-01-01'")
    }
    assert rows == {
        30: (1, 1, Decimal("0.00"), 0.0, True),  # Alice's first paid order came 50 days after Jan 15
        90: (1, 1, Decimal("39.90"), 39.90, True),
        180: (1, 0, Decimal("0.00"), None, False),  # July is after as_of_date
        365: (1, 0, Decimal("0.00"), None, False),
    }


def test_monthly_status_tiers_and_transitions(dbt_build):
    status = {
        (r[0], r[1]): r[2:]
        for r in dbt_build.query(
            "select user_id, month_start, snapshot_date, tier_code, lifecycle_stage from marts.fct_user_monthly_status")
    }
    assert status[(ALICE, date(2024, 1, 1))] == (date(2024, 1, 31), "ordinary", "prospect")
    assert status[(ALICE, date(2024, 3, 1))] == (date(2024, 3, 31), "ordinary", "new")
    assert status[(ALICE, date(2024, 4, 1))] == (AS_OF, "ordinary", "active")  # the last month stops at as_of
    assert (FRANK, date(2024, 4, 1)) not in status
    assert len(status) == 4 + 3 + 3 + 3 + 2  # months since first seen: Alice, Bob, Carol, Dave, Erin
    assert dbt_build.query("select count(*) from marts.fct_member_tier_changes") == [(0,)]
    moves = {(r[0], r[1], r[2]): r[3] for r in dbt_build.query("select * from marts.fct_lifecycle_transitions")}
    assert moves[(date(2024, 3, 1), "(not yet seen)", "new")] == 1  # Erin bought the day after she was invited
    assert moves[(date(2024, 4, 1), "new", "active")] == 2  # Alice and Erin


def test_rfm_and_segments(dbt_build):
    rfm = dbt_build.rows_by_key("marts.fct_user_rfm", "user_id")
    assert set(rfm) == {ALICE, CAROL, DAVE, ERIN}
    assert (rfm[DAVE]["recency_days"], rfm[DAVE]["frequency"], rfm[DAVE]["monetary"]) == (0, 2, Decimal("300.00"))
    assert (rfm[DAVE]["r_score"], rfm[DAVE]["f_score"], rfm[DAVE]["m_score"]) == (4, 3, 4)
    assert (rfm[ERIN]["r_score"], rfm[ERIN]["f_score"], rfm[ERIN]["m_score"]) == (3, 1, 1)
    segments = {r[:4]: r[4:] for r in dbt_build.query("select * from marts.fct_segment_counts")}
    assert segments[("unknown", "unknown", "华南", "active")] == (1, 1, Decimal("200.00"))  # Carol
    assert segments[("unknown", "unknown", "unknown", "active")] == (1, 1, Decimal("10.00"))  # Erin
    assert segments[("unknown", "unknown", "unknown", "(not yet seen)")] == (1, 0, Decimal("0.00"))  # Frank
    assert sum(v[0] for v in segments.values()) == 6


def test_docs_generate_describes_every_mart_column(dbt_build, tmp_path):
    import json

    from dbt_warehouse import run_dbt

    result = run_dbt(["docs", "generate"], dbt_build.database, tmp_path)
    assert result.success, result.exception
    catalog = json.loads((tmp_path / "target" / "catalog.json").read_text())
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    marts = {key: node for key, node in manifest["nodes"].items()
             if node["resource_type"] == "model" and node["schema"] == "marts"}
    assert len(marts) == 14  # 13 growth/core marts + dim_user_phones (docs/privacy.md)
    for key, node in marts.items():
        assert node["description"].strip(), key
        for column in catalog["nodes"][key]["columns"]:
            assert node["columns"][column.lower()]["description"].strip(), (key, column)
