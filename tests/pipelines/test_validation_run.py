"""validate_table on small raw tables in an in-memory DuckDB: what passes, what fails and how it is reported."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import duckdb
import pytest

from pipelines.ingest.load import ensure_schema
from pipelines.settings import REPO_ROOT
from pipelines.validation import load_config, read_rows, validate_table

LOADED_AT = datetime(2026, 1, 14, 9, 0, 0)
OPENID = "ohy_1PEmMqmXV6SkjIuXy5WB3vMc"
UNIONID = "omlH1HVH4Am_d_OTbyodRaYUS5hu"


@pytest.fixture(scope="module")
def config():
    return load_config(REPO_ROOT / "config" / "expectations.yml")


def _order(i: int, **overrides) -> dict:
    row = {
        "record_id": f"miniprogram_shop/{i}", "platform": "miniprogram_shop", "order_id": str(i),
        "appid": "wxmp0000000demo01", "buyer_openid": OPENID, "buyer_unionid": UNIONID, "buyer_account": None,
        "buyer_phone": "13912345678", "receiver_name": "张三", "receiver_phone": "13912345678",
        "order_status": "paid", "raw_status": "PAID", "paid_amount": 99.5, "refunded_amount": 0,
        "created_at": datetime(2025, 5, 1, 10, 0), "paid_at": datetime(2025, 5, 1, 10, 5),
        "_source_file": "orders_miniprogram/a.csv", "_file_hash": "h", "_row_number": i, "_layout": "l",
        "_loaded_at": LOADED_AT,
    }
    row.update(overrides)
    return row


def _insert(con, table: str, rows: list[dict]) -> None:
    columns = list(rows[0])
    marks = ", ".join("?" * len(columns))
    con.executemany(
        f"INSERT INTO raw.{table} ({', '.join(columns)}) VALUES ({marks})", [[r[c] for c in columns] for r in rows]
    )


@pytest.fixture
def con():
    connection = duckdb.connect()
    ensure_schema(connection)
    yield connection
    connection.close()


def test_valid_orders_pass_every_rule(con, config):
    _insert(con, "orders", [_order(i) for i in range(50)] + [_order(99, paid_at=None, order_status="unpaid")])
    result = validate_table(con, "orders", config)
    assert result.success, [r.message() for r in result.failures()]
    assert result.rows_validated == result.rows_in_table == 51
    assert result.scope == "all rows"
    assert len(result.results) == len(config.rules("orders"))


def test_broken_contract_fails_with_table_column_rule_and_masked_examples(con, config):
    rows = [_order(i) for i in range(20)]
    rows += [
        _order(100, refunded_amount=120.0),  # refunds more than paid
        _order(101, order_status="shipped"),  # not a canonical state
        _order(102, paid_amount=-5, refunded_amount=-5),
        _order(103, record_id=None),
        _order(104, buyer_openid="13912345678"),  # a phone where an openid belongs: a soft problem
        _order(105, created_at=datetime(2009, 12, 31), paid_at=datetime(2009, 12, 31, 0, 5)),
        _order(106, paid_at=LOADED_AT + timedelta(days=3)),
    ]
    _insert(con, "orders", rows)
    result = validate_table(con, "orders", config)
    failed = {r.rule.name: r for r in result.failures("error")}
    assert set(failed) == {
        "record_id not null", "order_status in allowed set", "paid_amount in range", "refunded_amount in range",
        "paid_amount >= refunded_amount",
    }
    refund = failed["paid_amount >= refunded_amount"]
    assert refund.unexpected_count == 1
    assert refund.message().startswith("raw.orders.paid_amount: paid_amount must be >= refunded_amount")
    assert "1 unexpected of 27 rows" in refund.message() and "cannot refund more than was paid" in refund.message()
    status = failed["order_status in allowed set"]
    assert status.examples == ("shipped",)
    assert "raw.orders.order_status" in status.message() and "shipped" in status.message()

    warned = {r.rule.name: r for r in result.failures("warn")}
    assert set(warned) == {"buyer_openid matches wechat_id", "created_at plausible time", "paid_at plausible time"}
    assert warned["buyer_openid matches wechat_id"].examples == ("139****5678",)
    assert "13912345678" not in warned["buyer_openid matches wechat_id"].message()
    assert warned["created_at plausible time"].examples == ("2009-12-31 00:00:00",)
    assert warned["paid_at plausible time"].unexpected_count == 2
    summary = result.summary("error")
    assert summary.startswith("raw.orders: 6 of 11 error expectations passed on 27 rows (all rows). Failed: ")
    metadata = refund.as_metadata()
    assert metadata["unexpected_count"] == 1 and metadata["severity"] == "error"
    assert metadata["column"] == "paid_amount, refunded_amount"


def test_mostly_tolerates_a_share_of_bad_values(con, config):
    rows = [
        {"record_id": str(i), "log_id": str(i), "appid": "wxmp0000000demo01", "openid": OPENID, "unionid": None,
         "phone": "+86 139 1234 5678" if i % 20 else "not a phone", "logged_in_at": datetime(2025, 3, 1),
         "_source_file": "f", "_file_hash": "h", "_row_number": i, "_layout": "l", "_loaded_at": LOADED_AT}
        for i in range(100)
    ]
    _insert(con, "mp_logins", rows)
    result = validate_table(con, "mp_logins", config)
    phone = next(r for r in result.results if r.rule.column == "phone")
    assert phone.success and phone.unexpected_count == 5  # 5% bad, the rule tolerates 10%
    con.execute("UPDATE raw.mp_logins SET phone = '1380013800' WHERE log_id::INTEGER < 30")  # 10 digits
    phone = next(r for r in validate_table(con, "mp_logins", config).results if r.rule.column == "phone")
    assert not phone.success and phone.severity == "warn" and phone.unexpected_count == 33  # and 3 "not a phone"
    assert set(phone.examples) <= {"**********", "not a phone"}  # digits in a phone column never leak


def test_empty_table_passes_with_no_rows(con, config):
    result = validate_table(con, "referrals", config)
    assert result.success and result.rows_validated == 0 and result.scope == "no rows to validate"


def test_big_tables_validate_this_runs_rows_plus_a_sample(con, config):
    old = [_order(i, _loaded_at=LOADED_AT - timedelta(days=7)) for i in range(300)]
    new = [_order(1000 + i) for i in range(40)]
    _insert(con, "orders", old + new)
    columns = config.columns("orders")
    frame, total, scope = read_rows(con, "orders", columns, max_rows=1000, since=LOADED_AT)
    assert (len(frame), total, scope) == (340, 340, "all rows")
    frame, total, scope = read_rows(con, "orders", columns, max_rows=100, since=LOADED_AT)
    assert len(frame) == 100 and total == 340
    assert set(frame["order_id"].astype(int)) >= set(range(1000, 1040))  # every new row, then 60 older ones
    assert "40 rows loaded in this run" in scope and "60 older rows" in scope
    again, _, _ = read_rows(con, "orders", columns, max_rows=100, since=LOADED_AT)
    assert sorted(again["order_id"]) == sorted(frame["order_id"])  # the sample is repeatable
    older = set(frame["order_id"].astype(int)) - set(range(1000, 1040))
    assert max(older) > 100  # spread over the older rows, not the first ones read
    frame, _, scope = read_rows(con, "orders", columns, max_rows=30, since=LOADED_AT)
    assert len(frame) == 40 and "older rows not re-validated" in scope
    frame, _, scope = read_rows(con, "orders", columns, max_rows=50, since=None)
    assert len(frame) == 50 and scope == "repeatable sample of 50 of 340 rows"
    small = replace(config, max_rows=100)
    assert validate_table(con, "orders", small, since=LOADED_AT).rows_validated == 100


def test_times_and_money_reach_gx_as_numbers(con, config):
    _insert(con, "orders", [_order(1)])
    frame, _, _ = read_rows(con, "orders", config.columns("orders"), max_rows=10)
    assert str(frame["paid_amount"].dtype) == "float64"
    assert str(frame["created_at"].dtype) == "float64"


def test_validation_prints_nothing(con, config, capfd):
    _insert(con, "orders", [_order(i) for i in range(10)])
    validate_table(con, "orders", config)
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in err + out  # GX's progress bars are off
    assert out == ""


def test_columns_that_are_entirely_null_pass(con, config):
    # a Taobao-only brand: no appid, no openid/unionid on any order, unpaid orders have no paid_at
    _insert(con, "orders", [
        _order(i, platform="taobao", record_id=f"taobao/{i}", appid=None, buyer_openid=None, buyer_unionid=None,
               buyer_account=f"nick{i}", paid_at=None, order_status="unpaid", paid_amount=0)
        for i in range(5)
    ])
    result = validate_table(con, "orders", config)
    assert result.success, [r.message() for r in result.failures()]


def test_a_referral_side_needs_its_openid_or_its_unionid(con, config):
    def invite(i, **ids):
        row = {"record_id": f"inv{i}", "invite_id": f"inv{i}", "appid": "wxmp0000000demo01",
               "inviter_openid": None, "inviter_unionid": None, "invitee_openid": None, "invitee_unionid": None,
               "invited_at": datetime(2025, 3, 1), "campaign": "c", "_source_file": "f", "_file_hash": "h",
               "_row_number": i, "_layout": "l", "_loaded_at": LOADED_AT}
        return {**row, **ids}

    _insert(con, "referrals", [
        invite(1, inviter_openid=OPENID, invitee_openid=OPENID),
        invite(2, inviter_unionid=UNIONID, invitee_openid=OPENID, invitee_unionid=UNIONID),
    ])
    assert validate_table(con, "referrals", config).success
    _insert(con, "referrals", [invite(3, inviter_openid=OPENID)])
    result = validate_table(con, "referrals", config)
    (failure,) = result.failures()
    assert failure.rule.name == "invitee_openid or invitee_unionid not null" and failure.severity == "error"
    assert failure.unexpected_count == 1
    assert failure.message().startswith(
        "raw.referrals.invitee_openid|invitee_unionid: at least one of invitee_openid, invitee_unionid must not be NULL"
    )
    assert failure.as_metadata()["column"] == "invitee_openid, invitee_unionid"


def test_validation_skips_gx_batch_fingerprint(con, config, monkeypatch):
    # The fingerprint is a batch marker nothing reads, and it cost 15 of 36 s on 6M login rows.
    from great_expectations.execution_engine import pandas_execution_engine

    def fingerprint(df):
        raise AssertionError("GX fingerprinted the batch")

    monkeypatch.setattr(pandas_execution_engine, "hash_pandas_dataframe", fingerprint)
    _insert(con, "orders", [_order(i) for i in range(20)])
    result = validate_table(con, "orders", config)
    assert result.rows_validated > 0 and result.success
