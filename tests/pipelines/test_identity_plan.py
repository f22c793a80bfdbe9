"""How the identity asset finds its batch from the raw files (`plan_from_files`): only records in new files are
read, and the batch must be the one the comparison of every observation (`plan_run`) finds; whenever the files
cannot tell, it says so (None) and every observation is compared."""

from datetime import datetime

import duckdb
import polars as pl
import pytest

from identity import IdentityConfig
from identity.state import run, save_state
from pipelines.defs.identity import (
    INPUT_FILES,
    input_files,
    plan_from_files,
    plan_run,
    write_input_files,
)
from pipelines.observations import fetch_frame, input_observations_sql, parse_record_specs

CONFIG = IdentityConfig()
SPECS = parse_record_specs(
    {
        "records": [
            {
                "source": "crm",
                "table": "crm_members",
                "record_id": "member_id",
                "observed_at": "joined_at",
                "identifiers": [
                    {"column": "phone", "id_type": "phone"},
                    {"column": "member_id", "id_type": "member_id", "scope_column": "crm"},
                ],
            },
            {
                "source": "orders",
                "table": "orders",
                "record_id": "order_id",
                "observed_at": "paid_at",
                "identifiers": [{"column": "receiver_phone", "id_type": "phone", "strength": "weak"}],
            },
        ]
    }
)
LOADED = datetime(2024, 3, 1)


def _add(con, table: str, file_hash: str, rows: list[tuple], loaded_at: datetime = LOADED) -> None:
    for row in rows:
        values = ", ".join("?" for _ in range(len(row) + 2))
        con.execute(f"insert into raw.{table} values ({values})", [*row, file_hash, loaded_at])


@pytest.fixture
def warehouse(tmp_path):
    """A warehouse whose state was published from two files, with the list of them kept."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("create schema raw")
    con.execute(
        "create table raw.crm_members (member_id varchar, crm varchar, phone varchar, joined_at timestamp, "
        "_file_hash varchar, _loaded_at timestamp)"
    )
    con.execute(
        "create table raw.orders (order_id varchar, receiver_phone varchar, paid_at timestamp, "
        "_file_hash varchar, _loaded_at timestamp)"
    )
    _add(con, "crm_members", "f1", [
        ("m1", "crm", "13912345678", datetime(2024, 1, 1)),
        ("m2", "crm", None, datetime(2024, 1, 2)),  # no phone: a member id alone
    ])
    _add(con, "orders", "f2", [
        ("o1", "13912345678", datetime(2024, 1, 5)),
        ("o2", None, datetime(2024, 1, 6)),  # no identifier at all: a bare record
    ])
    first = run(_all_observations(con), CONFIG)
    save_state(con, first.state)
    write_input_files(con, input_files(con, SPECS), first.run["run_id"], SPECS)
    yield con
    con.close()


def _all_observations(con) -> pl.DataFrame:
    return fetch_frame(con, input_observations_sql(SPECS))


def _by_comparing_all(con):
    return plan_run(con, _all_observations(con), CONFIG)


def test_no_new_file_is_an_empty_incremental_batch_without_reading_observations(warehouse):
    incremental, batch, why = plan_from_files(warehouse, SPECS, input_files(warehouse, SPECS), CONFIG)
    assert (incremental, batch.height, why) == (True, 0, "no new files")
    assert _by_comparing_all(warehouse)[::2] == (True, "0 new observations")
    # the empty batch runs like any other
    assert run(batch, CONFIG, None).run["records"] == 0


def test_a_new_file_gives_the_batch_the_comparison_of_every_observation_gives(warehouse):
    _add(warehouse, "orders", "f3", [
        ("o3", "13912345678", datetime(2024, 2, 1)),  # a new record
        ("o2", "13800001111", datetime(2024, 2, 2)),  # a bare record of f2 gets a phone: its empty row goes
    ])
    _add(warehouse, "crm_members", "f4", [("m1", "crm", "18600002222", datetime(2024, 2, 3))])  # another phone
    quick = plan_from_files(warehouse, SPECS, input_files(warehouse, SPECS), CONFIG)
    full = _by_comparing_all(warehouse)
    # o2's empty observation is gone, so both say the run must be full
    assert quick == (False, None, full[2]) and full[2] == "1 observations of the last run are gone or changed"

    warehouse.execute("delete from raw.orders where _file_hash = 'f3' and order_id = 'o2'")
    incremental, batch, why = plan_from_files(warehouse, SPECS, input_files(warehouse, SPECS), CONFIG)
    full_incremental, full_batch, full_why = _by_comparing_all(warehouse)
    assert incremental and full_incremental
    # o3's phone and m1's second phone; m1's other rows are as the state has them
    assert sorted(batch.rows()) == sorted(full_batch.rows()) and batch.height == 2
    assert why == f"{full_why} in 2 new files (2 records)"


def test_an_older_sighting_in_a_new_file_changes_an_observation_and_makes_the_run_full(warehouse):
    _add(warehouse, "crm_members", "f3", [("m2", "crm", None, datetime(2023, 12, 1))])
    quick = plan_from_files(warehouse, SPECS, input_files(warehouse, SPECS), CONFIG)
    assert quick[:2] == (False, None) and quick[2] == _by_comparing_all(warehouse)[2]


@pytest.mark.parametrize(
    "change",
    [
        "delete from raw.orders where order_id = 'o1'",  # rows forgotten from a file behind the state
        "update raw.orders set _loaded_at = timestamp '2024-03-02' where _file_hash = 'f2'",  # the file reloaded
        "delete from raw.crm_members",  # a file gone
        f"update identity_state.{INPUT_FILES} set run_id = 0",  # the list is not the last run's
    ],
)
def test_when_the_files_cannot_tell_every_observation_is_compared(warehouse, change):
    warehouse.execute(change)
    assert plan_from_files(warehouse, SPECS, input_files(warehouse, SPECS), CONFIG) is None


def test_another_mapping_or_other_rules_are_noticed(warehouse):
    files = input_files(warehouse, SPECS)
    weak_crm = parse_record_specs(
        {"records": [{**_crm_entry(), "identifiers": [{"column": "phone", "id_type": "phone", "strength": "weak"}]}]}
    )
    assert plan_from_files(warehouse, weak_crm, input_files(warehouse, weak_crm), CONFIG) is None
    assert plan_from_files(warehouse, SPECS, files, IdentityConfig(shared_threshold=5)) == (
        False, None, "identity rules changed"
    )


def _crm_entry() -> dict:
    return {"source": "crm", "table": "crm_members", "record_id": "member_id", "observed_at": "joined_at"}


def test_raw_tables_not_written_by_ingest_have_no_file_list(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("create schema raw")
        con.execute("create table raw.crm_members (member_id varchar, crm varchar, phone varchar, joined_at timestamp)")
        con.execute("create table raw.orders (order_id varchar, receiver_phone varchar, paid_at timestamp)")
        assert input_files(con, SPECS) is None
        write_input_files(con, None, 1, SPECS)
        assert con.sql(
            f"select count(*) from information_schema.tables where table_name = '{INPUT_FILES}'"
        ).fetchall() == [(0,)]
