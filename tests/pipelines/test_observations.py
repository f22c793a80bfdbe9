"""The observations config becomes safe SQL, and that SQL reads raw tables as declared."""

from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from identity.state import read_parquet_frame
from pipelines.observations import (
    ObservationConfigError,
    fetch_frame,
    input_files_sql,
    input_observations_sql,
    load_record_specs,
    observations_sql,
    parse_record_specs,
    records_in_files_sql,
    records_sql,
    scratch_folder,
)

REPO = Path(__file__).resolve().parents[2]


def _spec(**overrides):
    entry = {
        "source": "orders",
        "table": "orders",
        "record_id": "record_id",
        "observed_at": "created_at",
        "identifiers": [
            {"column": "buyer_openid", "id_type": "openid", "scope_column": "appid"},
            {"column": "receiver_phone", "id_type": "phone", "strength": "weak"},
        ],
    }
    entry.update(overrides)
    return {"records": [entry]}


def test_shipped_config_parses_and_covers_every_raw_table():
    specs = load_record_specs(REPO / "config" / "observations.yml")
    assert {spec.table for spec in specs} == {
        "oa_followers", "mp_logins", "wecom_contacts", "orders", "crm_members", "referrals",
    }
    referral_suffixes = sorted(spec.record_id_suffix for spec in specs if spec.source == "referrals")
    assert referral_suffixes == ["/invitee", "/inviter"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"table": "orders; drop table x"}, "table must be a plain SQL name"),
        ({"identifiers": [{"column": "a", "id_type": "passport"}]}, "unknown id_type"),
        ({"identifiers": [{"column": "a", "id_type": "phone", "strength": "medium"}]}, "strength"),
        ({"identifiers": []}, "no identifiers"),
        ({"record_id_suffix": "'/x"}, "record_id_suffix"),
    ],
)
def test_bad_config_is_refused_with_the_entry_named(overrides, message):
    with pytest.raises(ObservationConfigError, match=message) as error:
        parse_record_specs(_spec(**overrides), origin="obs.yml")
    assert "obs.yml records[1]" in str(error.value)


def test_sql_reads_identifiers_scopes_lists_and_suffixes():
    con = duckdb.connect()
    con.execute("create schema raw")
    con.execute(
        "create table raw.orders as select * from (values "
        "('o1', 'wxapp', 'openA', '13912345678', timestamp '2025-01-02 10:00:00'),"
        "('o1', 'wxapp', 'openA', '13912345678', timestamp '2025-01-01 09:00:00'),"
        "('o2', null, null, null, timestamp '2025-01-03 10:00:00')"
        ") t(record_id, appid, buyer_openid, receiver_phone, created_at)"
    )
    con.execute(
        "create table raw.wecom_contacts as select * from (values "
        "('wm1/staff', '[\"13900000001\", \"13900000002\"]', timestamp '2025-02-01 00:00:00'),"
        "('wm2/staff', null, timestamp '2025-02-01 00:00:00'),"
        "('wm3/staff', '[null]', timestamp '2025-02-02 00:00:00'),"
        "('wm4/staff', '[]', timestamp '2025-02-03 00:00:00'),"
        "('wm5/staff', '[]', timestamp '2025-02-04 00:00:00'),"  # a number on only one of its two exports
        "('wm5/staff', '[\"13900000005\"]', timestamp '2025-02-05 00:00:00')"
        ") t(record_id, remark_mobiles, added_at)"
    )
    specs = parse_record_specs(_spec())
    specs += parse_record_specs(
        {
            "records": [
                {
                    "source": "wecom_contacts",
                    "table": "wecom_contacts",
                    "record_id": "record_id",
                    "record_id_suffix": "/x",
                    "observed_at": "added_at",
                    "identifiers": [{"column": "remark_mobiles", "id_type": "phone", "list": "json"}],
                }
            ]
        }
    )
    rows = con.sql(observations_sql(specs) + " order by all").fetchall()
    assert [row[:5] + (row[6],) for row in rows] == [
        ("orders", "o1", "openid", "wxapp", "openA", "strong"),
        ("orders", "o1", "phone", "", "13912345678", "weak"),
        ("wecom_contacts", "wm1/staff/x", "phone", "", "13900000001", "strong"),
        ("wecom_contacts", "wm1/staff/x", "phone", "", "13900000002", "strong"),
        ("wecom_contacts", "wm5/staff/x", "phone", "", "13900000005", "strong"),
    ]
    # the same identifier seen twice on one record keeps its earliest time
    assert str(rows[0][5]) == "2025-01-01 09:00:00"
    records = con.sql(records_sql(specs) + " order by all").fetchall()
    assert [row[:2] for row in records] == [
        ("orders", "o1"), ("orders", "o2"), ("wecom_contacts", "wm1/staff/x"), ("wecom_contacts", "wm2/staff/x"),
        ("wecom_contacts", "wm3/staff/x"), ("wecom_contacts", "wm4/staff/x"), ("wecom_contacts", "wm5/staff/x"),
    ]
    assert [row[3] for row in records] == [True, False, True, False, False, False, True]
    # what resolution is given: the observations, plus one empty weak phone for each record with no identifier
    given = con.sql(input_observations_sql(specs) + " order by all").fetchall()
    assert [row for row in given if row[4] is not None] == rows
    assert [row for row in given if row[4] is None] == [
        ("orders", "o2", "phone", "", None, datetime(2025, 1, 3, 10), "weak"),
        ("wecom_contacts", "wm2/staff/x", "phone", "", None, datetime(2025, 2, 1), "weak"),
        ("wecom_contacts", "wm3/staff/x", "phone", "", None, datetime(2025, 2, 2), "weak"),
        ("wecom_contacts", "wm4/staff/x", "phone", "", None, datetime(2025, 2, 3), "weak"),
    ]
    # limited to some records: exactly their rows of the whole, with every raw row of theirs counted (o1's earlier
    # sighting, wm5's number on one of its two exports), bare records included; the suffix is part of the id
    chosen = [("orders", "o1"), ("orders", "o2"), ("wecom_contacts", "wm5/staff/x"), ("wecom_contacts", "wm5/staff")]
    con.execute("create table chosen (source varchar, record_id varchar)")
    con.executemany("insert into chosen values (?, ?)", chosen)
    limited = con.sql(input_observations_sql(specs, only_records="chosen") + " order by all").fetchall()
    assert limited == [row for row in given if row[:2] in chosen] and len(limited) == 4
    with pytest.raises(ObservationConfigError, match="only_records"):
        input_observations_sql(specs, only_records="chosen; drop table raw.orders")


def test_records_in_files_and_the_files_behind_the_observations():
    con = duckdb.connect()
    con.execute("create schema raw")
    con.execute(
        "create table raw.orders as select * from (values "
        "('o1', 'wxapp', 'openA', '13912345678', timestamp '2025-01-01 09:00:00', 'f1', timestamp '2025-03-01'),"
        "('o2', null, null, null, timestamp '2025-01-03 10:00:00', 'f1', timestamp '2025-03-01'),"
        "('o1', 'wxapp', 'openA', null, timestamp '2025-01-05 10:00:00', 'f2', timestamp '2025-03-02'),"
        "('o3', 'wxapp', 'openB', null, timestamp '2025-01-06 10:00:00', 'f2', timestamp '2025-03-02')"
        ") t(record_id, appid, buyer_openid, receiver_phone, created_at, _file_hash, _loaded_at)"
    )
    specs = parse_record_specs(_spec())
    files = con.sql(input_files_sql(specs) + " order by all").fetchall()
    assert files == [("orders", "f1", 2, datetime(2025, 3, 1)), ("orders", "f2", 2, datetime(2025, 3, 2))]
    con.execute("create table new_files as select 'orders' as raw_table, 'f2' as file_hash")
    touched = con.sql(records_in_files_sql(specs, "new_files") + " order by all").fetchall()
    assert touched == [("orders", "o1"), ("orders", "o3")]


def test_fetch_frame_gives_the_query_result_and_leaves_no_file(tmp_path):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    frame = fetch_frame(con, "select 1::bigint as n, 'it''s' as text, null::timestamp as seen_at union all "
                             "select 2, null, timestamp '2026-11-27 12:00:00'")
    assert frame.sort("n").rows() == [(1, "it's", None), (2, None, datetime(2026, 11, 27, 12))]
    assert fetch_frame(con, "select 1::bigint as n where false").height == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warehouse.duckdb"]  # the scratch folder is gone


def test_parquet_frame_has_one_chunk_per_column_and_the_file_content(tmp_path):
    con = duckdb.connect()
    path = tmp_path / "rows.parquet"
    # small row groups, so the file holds many of them, as a 27M-row export does
    con.execute(
        f"copy (select range as n, 'v' || range as text from range(5000)) to '{path}' "
        "(format parquet, row_group_size 1000)"
    )
    assert pl.read_parquet(path).n_chunks("all") != [1, 1]  # what the helper is for
    frame = read_parquet_frame(path)
    assert frame.n_chunks("all") == [1, 1]
    assert frame.sort("n").equals(con.sql(f"select * from '{path}' order by n").pl())


def test_scratch_folder_is_beside_a_writable_warehouse_only(tmp_path):
    assert scratch_folder(str(tmp_path / "oneid.duckdb")) == tmp_path
    assert scratch_folder(":memory:") is None and scratch_folder(None) is None
    assert scratch_folder(str(tmp_path / "missing" / "oneid.duckdb")) is None
