"""config/expectations.yml → rule specs → GX suites: pure functions, no database, no Dagster."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from pipelines.ingest.catalog import CANONICAL_SOURCES
from pipelines.settings import REPO_ROOT
from pipelines.validation import ValidationConfigError, load_config, mask_phones, mask_value, parse_config
from pipelines.validation.suites import build_suite, epoch_ms, from_epoch_ms, time_bounds

SHIPPED = REPO_ROOT / "config" / "expectations.yml"


def _config(rules, table="orders", **extra):
    return parse_config({"formats": {"wechat_id": "^[A-Za-z0-9_-]{24,32}$"}, "tables": {table: rules}, **extra})


def test_shipped_config_has_a_suite_per_raw_table_requiring_record_id():
    config = load_config(SHIPPED)
    assert set(config.tables) == set(CANONICAL_SOURCES)
    for table in CANONICAL_SOURCES:
        not_null = {r.column for r in config.rules(table) if r.kind == "not_null" and r.severity == "error"}
        assert "record_id" in not_null, table
    orders = {(r.kind, r.column, r.column_b, r.severity) for r in config.rules("orders")}
    assert ("a_ge_b", "paid_amount", "refunded_amount", "error") in orders
    assert ("between", "paid_amount", None, "error") in orders
    statuses = next(r for r in config.rules("orders") if r.kind == "in_set" and r.column == "order_status")
    assert set(statuses.values) == {"unpaid", "paid", "partially_refunded", "refunded", "cancelled"}
    oa = {(r.kind, r.column): r for r in config.rules("oa_followers")}
    assert oa[("in_set", "subscribe")].values == (0, 1)
    assert oa[("regex", "openid")].severity == "warn"
    crm = {(r.kind, r.column): r for r in config.rules("crm_members")}
    assert crm[("in_set", "gender")].values == ("male", "female")


def test_a_rule_on_several_columns_becomes_one_spec_per_column():
    config = _config([{"expect": "regex", "columns": ["buyer_openid", "buyer_unionid"], "format": "wechat_id",
                       "severity": "warn", "mostly": 0.95}])
    specs = config.rules("orders")
    assert [s.column for s in specs] == ["buyer_openid", "buyer_unionid"]
    assert all(s.pattern == "^[A-Za-z0-9_-]{24,32}$" and s.pattern_name == "wechat_id" for s in specs)
    assert all(s.severity == "warn" and s.mostly == 0.95 for s in specs)
    assert config.columns("orders") == ("buyer_openid", "buyer_unionid")


def test_any_not_null_reads_its_columns_and_derives_one():
    config = _config([{"expect": "any_not_null", "columns": ["buyer_openid", "buyer_unionid"]}])
    (spec,) = config.rules("orders")
    assert spec.column == "buyer_openid|buyer_unionid" and spec.columns == ("buyer_openid", "buyer_unionid")
    assert config.columns("orders") == ("buyer_openid", "buyer_unionid")
    assert config.derived("orders") == {"buyer_openid|buyer_unionid": 'coalesce("buyer_openid", "buyer_unionid")'}


def test_defaults_and_time_rules():
    config = _config(
        [{"expect": "plausible_time", "columns": ["created_at", "paid_at"]},
         {"expect": "plausible_time", "column": "created_at", "min": "2000-01-01"}],
        defaults={"earliest_time": "2012-01-01", "max_rows": 10, "future_tolerance_hours": 2},
    )
    first, _, own = config.rules("orders")
    assert first.min == date(2012, 1, 1) and own.min == date(2000, 1, 1)
    assert config.max_rows == 10
    low, high = time_bounds(first, datetime(2026, 1, 1, 3, 0), config.future_tolerance_hours)
    assert (low, high) == (datetime(2012, 1, 1), datetime(2026, 1, 1, 5, 0))


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"expect": "not_null", "column": "paid_amout"}], "'paid_amout' is not a column of raw.orders"),
        ([{"expect": "unique", "column": "order_id"}], "expect must be one of"),
        ([{"expect": "regex", "column": "appid", "format": "nope"}], "format 'nope' is not in `formats`"),
        ([{"expect": "regex", "column": "appid", "pattern": "(["}], "bad regex"),
        ([{"expect": "between", "column": "created_at", "min": 0}], "created_at is not numeric"),
        ([{"expect": "plausible_time", "column": "paid_amount"}], "not a TIMESTAMP or DATE column"),
        ([{"expect": "in_set", "column": "order_status"}], "non-empty `values`"),
        ([{"expect": "not_null", "column": "order_id", "severity": "fatal"}], "severity must be error or warn"),
        ([{"expect": "not_null", "column": "order_id", "colour": "red"}], "unknown keys colour"),
        ([{"expect": "a_ge_b", "column_a": "paid_amount", "column_b": "refund"}], "'refund' is not a column"),
        ([{"expect": "any_not_null", "columns": ["buyer_openid"]}], "two or more columns"),
    ],
)
def test_config_errors_name_the_table_rule_and_problem(rules, message):
    with pytest.raises(ValidationConfigError, match=message) as error:
        _config(rules)
    assert "tables.orders[0]" in str(error.value)


def test_unknown_table_is_rejected():
    with pytest.raises(ValidationConfigError, match="unknown raw table 'order'"):
        _config([{"expect": "not_null", "column": "order_id"}], table="order")


def test_suite_has_one_expectation_per_rule_with_severity_in_meta():
    config = load_config(SHIPPED)
    rules = config.rules("orders")
    suite = build_suite("orders", rules, datetime(2026, 1, 1), config.future_tolerance_hours)
    assert suite.name == "raw.orders"
    assert len(suite.expectations) == len(rules)
    by_type = {}
    for expectation in suite.expectations:
        by_type.setdefault(expectation.expectation_type, []).append(expectation)
        rule = rules[expectation.meta["rule"]]
        assert expectation.meta["severity"] == rule.severity
    assert {e.column for e in by_type["expect_column_values_to_not_be_null"]} >= {"record_id", "order_id"}
    pairs = by_type["expect_column_pair_values_a_to_be_greater_than_b"]
    pair = next(e for e in pairs if e.column_B == "refunded_amount")
    assert pair.column_A == "paid_amount" and pair.or_equal is True
    times = [e for e in by_type["expect_column_values_to_be_between"] if e.column == "created_at"]
    assert times[0].min_value == epoch_ms(datetime(2010, 1, 1))
    assert from_epoch_ms(times[0].max_value) == datetime(2026, 1, 2)


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("13912345678", "139****5678"),
        ("+86 139 1234 5678", "139****5678"),
        ("86-13912345678", "139****5678"),
        ("139-1234-5678", "139****5678"),
        ("crm/13912345678/x", "crm/139****5678/x"),
        ("3110569094148879722", "3110569094148879722"),  # an order number is not a phone
        ("oXA-TfPicp01Ktp2JXA76zlYCFrW", "oXA-TfPicp01Ktp2JXA76zlYCFrW"),
    ],
)
def test_phone_numbers_are_masked_in_any_form(raw, masked):
    assert mask_phones(raw) == masked


def test_phone_columns_mask_every_long_digit_run():
    assert mask_value("12345678901", "receiver_phone") == "123****8901"
    assert mask_value("6543210", "phone") == "*******"
    assert mask_value(("13912345678", 3.5), "buyer_phone") == "(139****5678, 3.5)"
    assert mask_value("12345678901", "order_id") == "12345678901"
