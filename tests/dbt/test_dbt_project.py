"""dbt_project/ against the hand-written warehouse in conftest.py.

Expected values are worked out by hand from conftest.RAW_ROWS; the comment next to each says why.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

from dbt_warehouse import ALICE, BOB, CAROL, DAVE, ERIN, FRANK, MP, OA

MODEL_SCHEMAS = {"staging", "intermediate", "marts"}
MARTS = {
    "fct_orders", "dim_users", "dim_user_phones",
    "fct_gmv_funnel_cohort", "fct_gmv_funnel_monthly", "fct_gmv_change_monthly", "fct_ltv_curves",
    "fct_referral_inviters", "fct_referral_cohorts",
    "fct_user_monthly_status", "fct_member_tier_changes", "fct_lifecycle_transitions", "fct_user_rfm",
    "fct_segment_counts",
}


# --- the build ---------------------------------------------------------------------------------


def test_build_succeeds_with_every_test_passing(dbt_build):
    assert dbt_build.result.success, dbt_build.result.exception
    statuses = {str(r.node.name): str(r.status) for r in dbt_build.result.result.results}
    # warn counts as failure here: the fixture is clean, so a warning means a model changed behaviour.
    not_ok = {name: status for name, status in statuses.items() if status not in ("success", "pass")}
    assert not_ok == {}
    assert "assert_net_gmv_reconciles_orders_to_users" in statuses
    assert "assert_net_gmv_reconciles_across_marts" in statuses
    # dbt unit tests (funnel arithmetic, zero denominators, tier and lifecycle edges, attribution) run in the build.
    unit_tests = {str(r.node.name) for r in dbt_build.result.result.results if r.node.resource_type == "unit_test"}
    assert unit_tests == {
        "funnel_factors_multiply_back_and_zero_denominators_are_null",
        "monthly_change_effects_sum_to_the_change",
        "member_tier_thresholds_at_their_edges",
        "lifecycle_windows_at_their_edges",
        "first_touch_window_and_self_invites",
        "referral_chains_reach_the_root_and_stop_at_cycles",
        "referred_people_take_their_root_channel",
        "as_of_date_defaults_to_the_latest_date_in_the_data",
        "as_of_date_var_wins",
    }


def test_schemas_are_named_exactly(dbt_build):
    schemas = {
        schema: {name for name, in dbt_build.query(
            "select table_name from information_schema.tables where table_schema = ?", [schema])}
        for (schema,) in dbt_build.query("select distinct table_schema from information_schema.tables")
    }
    assert {"raw", "identity", "staging", "intermediate", "marts", "seeds"} == set(schemas)
    assert MARTS == schemas["marts"]
    assert "int_user_touchpoints" in schemas["intermediate"]
    assert all(name.startswith("stg_") for name in schemas["staging"])


# --- staging: latest state per entity ----------------------------------------------------------


def test_follower_who_unfollowed_keeps_profile_from_when_following(dbt_build):
    followers = dbt_build.rows_by_key("staging.stg_wechat_oa__followers", "openid")
    assert set(followers) == {"oAlice", "oBob", "oFrank"}

    alice = followers["oAlice"]
    assert alice["record_id"] == f"{OA}/oAlice"
    assert alice["user_id"] == ALICE
    assert alice["is_following"] is False  # the April export says subscribe = 0
    assert alice["n_exports"] == 2
    assert alice["unionid"] == "oUAlice"  # only the March export carried it
    assert alice["first_subscribed_at"] == datetime(2024, 2, 10, 9, 0)
    assert alice["qr_scene_str"] == "poster_spring"

    assert followers["oBob"]["is_following"] is True
    assert followers["oBob"]["unionid"] is None

    frank = followers["oFrank"]
    assert frank["is_following"] is False
    assert frank["first_subscribed_at"] is None
    assert frank["user_id"] == FRANK


def test_orders_take_the_latest_export_and_net_out_refunds(dbt_build):
    orders = dbt_build.rows_by_key("staging.stg_shop__orders", "record_id")
    got = {
        key: (r["user_id"], r["order_status"], r["paid_amount"], r["refunded_amount"], r["net_amount"],
              r["is_paid_order"])
        for key, r in orders.items()
    }
    assert got == {
        # paid in the March export, refunded in the April one: the April state wins.
        "miniprogram_shop/MP001": (ALICE, "refunded", Decimal("100.00"), Decimal("100.00"), Decimal("0.00"), True),
        "miniprogram_shop/MP002": (ALICE, "partially_refunded", Decimal("59.90"), Decimal("20.00"),
                                   Decimal("39.90"), True),
        "miniprogram_shop/MP003": (CAROL, "unpaid", Decimal("50.00"), Decimal("0.00"), Decimal("0.00"), False),
        # same _loaded_at; 2024-04-30.csv is the newer file although MP004 sits on a higher row in the older one.
        "miniprogram_shop/MP004": (DAVE, "refunded", Decimal("66.00"), Decimal("66.00"), Decimal("0.00"), True),
        "miniprogram_shop/5001": (ERIN, "paid", Decimal("10.00"), Decimal("0.00"), Decimal("10.00"), True),
        # cancelled: the amount that was due is kept, but it is not GMV.
        "taobao/TB001": (BOB, "cancelled", Decimal("88.00"), Decimal("0.00"), Decimal("0.00"), False),
        "taobao/TB002": (CAROL, "paid", Decimal("200.00"), Decimal("0.00"), Decimal("200.00"), True),
        "taobao/5001": (DAVE, "paid", Decimal("300.00"), Decimal("0.00"), Decimal("300.00"), True),
    }
    assert orders["miniprogram_shop/MP001"]["n_exports"] == 2


def test_staging_drops_names_and_phone_numbers(dbt_build):
    columns = {
        name for name, in dbt_build.query(
            "select column_name from information_schema.columns where table_schema in ('staging', 'marts') "
            "and table_name not like 'stg_identity__%'")
    }
    leaked = columns & {"phone", "buyer_phone", "receiver_phone", "receiver_name", "member_name",
                        "contact_name", "remark", "remark_mobiles"}
    assert leaked == set()


def test_other_sources_latest_state(dbt_build):
    logins = dbt_build.rows_by_key("staging.stg_miniprogram__logins", "log_id")
    assert set(logins) == {"L1", "L2"}  # L1 was exported twice
    assert (logins["L1"]["user_id"], logins["L1"]["has_authorized_phone"]) == (ALICE, True)
    assert (logins["L2"]["user_id"], logins["L2"]["has_authorized_phone"], logins["L2"]["unionid"]) == (
        CAROL, False, None)  # empty strings in the CSV are NULL here

    contacts = dbt_build.rows_by_key("staging.stg_wecom__contacts", "record_id")
    alice = contacts["wmAlice/staff_01"]
    assert (alice["user_id"], alice["unionid"], alice["channel_code"], alice["gender"], alice["n_exports"]) == (
        ALICE, "oUAlice", "poster_spring", "female", 2)
    assert contacts["wmDave/staff_02"]["channel_code"] == "live_0312"

    members = dbt_build.rows_by_key("staging.stg_crm__members", "member_id")
    assert (members["M001"]["user_id"], members["M001"]["declared_tier"], members["M001"]["points"]) == (
        ALICE, "银卡会员", 260)


def test_referral_carries_both_people(dbt_build):
    invites = dbt_build.rows_by_key("staging.stg_referral__invites", "invite_id")
    invite = invites["INV1"]
    assert (invite["inviter_user_id"], invite["invitee_user_id"], invite["is_self_invite"]) == (ALICE, ERIN, False)
    assert invite["appid"] == MP
    assert invite["invitee_unionid"] is None


# --- marts ---------------------------------------------------------------------------------------


def test_fct_orders(dbt_build):
    orders = dbt_build.rows_by_key("marts.fct_orders", "order_key")
    assert len(orders) == 8
    mp001 = orders["miniprogram_shop/MP001"]
    assert (mp001["platform"], mp001["order_id"], mp001["order_month"]) == ("miniprogram_shop", "MP001",
                                                                          date(2024, 3, 1))
    # Alice's paid orders by paid_at: MP001 (refunded, still a paid order) then MP002.
    assert (mp001["paid_order_seq"], orders["miniprogram_shop/MP002"]["paid_order_seq"]) == (1, 2)
    assert orders["taobao/TB001"]["paid_order_seq"] is None
    # Dave: taobao/5001 paid in February before MP004 in April.
    assert (orders["taobao/5001"]["paid_order_seq"], orders["miniprogram_shop/MP004"]["paid_order_seq"]) == (1, 2)
    total, = dbt_build.query("select sum(net_amount) from marts.fct_orders")[0]
    assert total == Decimal("549.90")  # 39.90 + 200 + 300 + 10


def test_dim_users(dbt_build):
    users = dbt_build.rows_by_key("marts.dim_users", "user_id")
    assert set(users) == {ALICE, BOB, CAROL, DAVE, ERIN, FRANK}

    def summary(user_id):
        u = users[user_id]
        return (u["first_seen_at"], u["first_order_at"], u["last_order_at"], u["lifetime_orders"],
                u["lifetime_net_gmv"])

    # CRM registration (Jan 15) is Alice's earliest trace; MP001 counts as an order but nets 0.
    assert summary(ALICE) == (datetime(2024, 1, 15, 9), datetime(2024, 3, 5, 10), datetime(2024, 3, 8, 11, 1),
                              2, Decimal("39.90"))
    # Bob only has a cancelled order: seen, never a buyer.
    assert summary(BOB) == (datetime(2024, 2, 20, 12), None, None, 0, Decimal("0.00"))
    assert summary(CAROL) == (datetime(2024, 2, 25, 10), datetime(2024, 2, 25, 10, 2), datetime(2024, 2, 25, 10, 2),
                              1, Decimal("200.00"))
    assert summary(DAVE) == (datetime(2024, 2, 28, 18), datetime(2024, 2, 28, 18, 30), datetime(2024, 4, 20, 10, 5),
                             2, Decimal("300.00"))
    # Erin was first seen when invited, the day before her first order.
    assert summary(ERIN) == (datetime(2024, 3, 20, 19), datetime(2024, 3, 21, 9, 1), datetime(2024, 3, 21, 9, 1),
                             1, Decimal("10.00"))
    assert summary(FRANK) == (None, None, None, 0, Decimal("0.00"))

    alice = users[ALICE]
    assert (alice["n_openids"], alice["n_unionids"], alice["n_phones"], alice["n_external_userids"],
            alice["n_member_ids"]) == (2, 1, 1, 1, 1)
    assert (alice["n_records"], alice["n_sources"]) == (7, 6)
    assert (users[FRANK]["n_openids"], users[FRANK]["n_phones"]) == (1, 0)


def test_documented_columns_match_built_relations(dbt_build, dbt_parse):
    """A column added in SQL but not in YAML (or the reverse) is documentation rot."""
    for node in dbt_parse.manifest.nodes.values():
        if node.resource_type != "model":
            continue
        built = [name for name, in dbt_build.query(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
            "order by ordinal_position", [node.schema, node.alias])]
        assert built, f"{node.schema}.{node.alias} was not built"
        assert list(node.columns) == built, node.name


# --- structure -----------------------------------------------------------------------------------


def test_every_model_and_column_is_described(dbt_parse):
    models = [n for n in dbt_parse.manifest.nodes.values() if n.resource_type == "model"]
    assert {m.name for m in models if m.fqn[1] == "marts"} == MARTS
    for model in models:
        assert model.schema in MODEL_SCHEMAS, model.name
        assert model.description.strip(), f"{model.name} has no description"
        assert model.columns, f"{model.name} documents no columns"
        for column in model.columns.values():
            assert column.description.strip(), f"{model.name}.{column.name} has no description"
    for seed in (n for n in dbt_parse.manifest.nodes.values() if n.resource_type == "seed"):
        assert seed.description.strip() and all(c.description.strip() for c in seed.columns.values())


def test_only_staging_models_read_sources(dbt_parse):
    for node in dbt_parse.manifest.nodes.values():
        if node.resource_type != "model":
            continue
        reads_source = any(dep.startswith("source.") for dep in node.depends_on.nodes)
        assert reads_source == (node.fqn[1] == "staging"), node.name


def test_source_asset_keys_for_dagster(dbt_parse):
    from dagster import AssetKey
    from dagster_dbt import DagsterDbtTranslator

    manifest = json.loads(dbt_parse.manifest_json.read_text())
    translator = DagsterDbtTranslator()
    keys = {
        (props["source_name"], props["schema"], props["name"]): translator.get_asset_key(props)
        for props in manifest["sources"].values()
    }
    assert keys == {
        ("wechat_oa", "raw", "oa_followers"): AssetKey(["raw", "oa_followers"]),
        ("miniprogram", "raw", "mp_logins"): AssetKey(["raw", "mp_logins"]),
        ("wecom", "raw", "wecom_contacts"): AssetKey(["raw", "wecom_contacts"]),
        ("shop", "raw", "orders"): AssetKey(["raw", "orders"]),
        ("crm", "raw", "crm_members"): AssetKey(["raw", "crm_members"]),
        ("referral", "raw", "referrals"): AssetKey(["raw", "referrals"]),
        ("identity", "identity", "record_map"): AssetKey(["identity", "record_map"]),
        ("identity", "identity", "id_map"): AssetKey(["identity", "id_map"]),
        ("identity", "identity", "phone_keys"): AssetKey(["identity", "phone_keys"]),
    }
    model_keys = {
        translator.get_asset_key(props)
        for props in manifest["nodes"].values() if props["resource_type"] == "model"
    }
    assert AssetKey(["marts", "fct_orders"]) in model_keys
    assert AssetKey(["staging", "stg_shop__orders"]) in model_keys


def _generic_test_on(dbt_build, test_name: str, model: str, rows: str) -> tuple[int, list[tuple]]:
    """(failing rows of the built model, failing rows when the test reads `rows` instead): the compiled test
    of this name, run on the model and on a probe relation made from it."""
    node = next(r.node for r in dbt_build.result.result.results if str(r.node.name).startswith(test_name))
    sql = node.compiled_code
    relation = next(part for part in sql.split() if part.endswith(f'"staging"."{model}"'))
    passing = dbt_build.query(f"select count(*) from ({sql})")[0][0]
    return passing, dbt_build.query(f"select * from ({sql.replace(relation, f'({rows})')}) order by all")


def test_primary_key_test_fails_on_a_repeated_and_a_missing_key(dbt_build):
    # The generic test replaces unique + not_null on the staging keys: it must catch what both caught.
    passing, failing = _generic_test_on(
        dbt_build, "primary_key_stg_crm__members_member_id", "stg_crm__members",
        "select * from staging.stg_crm__members"
        " union all (select * from staging.stg_crm__members order by member_id limit 1)"
        " union all (select * replace (null as member_id) from staging.stg_crm__members limit 1)",
    )
    first = dbt_build.query("select min(member_id) from staging.stg_crm__members")[0][0]
    assert passing == 0
    assert failing == [(first, 2), (None, 1)]


def test_not_null_columns_test_names_the_missing_column(dbt_build):
    passing, failing = _generic_test_on(
        dbt_build, "not_null_columns_stg_shop__orders", "stg_shop__orders",
        "select * from staging.stg_shop__orders"
        " union all (select * replace (null as user_id) from staging.stg_shop__orders limit 1)",
    )
    assert passing == 0
    assert failing == [(False, False, True, False, False)]  # platform, order_id, user_id, order_status, net_amount
