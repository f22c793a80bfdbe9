"""pipelines/publish.py: only marts and seeds reach the analyst file, it is replaced atomically, failures keep
the previous file, and a reader in another process never sees a half-written or locked file."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from pipelines import publish as publish_module
from pipelines.publish import MANIFEST_SCHEMA, MANIFEST_TABLE, PublishError, publish


def make_warehouse(path: Path, orders: int) -> None:
    """A warehouse shaped like the real one: personal data in raw/identity/staging, aggregates in marts."""
    with duckdb.connect(str(path)) as con:
        for schema in ("raw", "identity", "staging", "marts", "seeds"):
            con.execute(f"create schema if not exists {schema}")
        con.execute("create or replace table raw.orders as select i as record_id, '1391234' || lpad(i::varchar, 4, '0') "
                    f"as buyer_phone from range({orders}) t(i)")
        con.execute("create or replace table identity.id_map as select 'phone' as id_type, '13912345678' as id_value")
        con.execute("create or replace view staging.stg_orders as select * from raw.orders")
        con.execute(f"create or replace table marts.fct_orders as select i as order_id, 'u' || (i % 7) as user_id, "
                    f"(i * 1.5)::decimal(18, 2) as net_amount from range({orders}) t(i)")
        con.execute("create or replace table marts.dim_users as select distinct user_id from marts.fct_orders")
        con.execute("create or replace table seeds.channel_codes as select 'poster_spring' as channel_code, "
                    "'春季海报' as channel_name")


def publish_from(warehouse: Path, target: Path, **kwargs):
    with duckdb.connect(str(warehouse)) as con:
        return publish(con, target, **kwargs)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".wal")))


def test_only_marts_and_seeds_are_published_with_a_manifest(tmp_path):
    warehouse, target = tmp_path / "oneid.duckdb", tmp_path / "out" / "analyst.duckdb"
    target.parent.mkdir()
    make_warehouse(warehouse, orders=25)
    result = publish_from(warehouse, target, publish_id="first")
    assert result.path == target.resolve()
    assert result.tables == {"marts.dim_users": 7, "marts.fct_orders": 25, "seeds.channel_codes": 1}
    with duckdb.connect(str(target), read_only=True) as con:
        schemas = {r[0] for r in con.sql("select distinct table_schema from information_schema.tables").fetchall()}
        assert schemas == {"marts", "seeds", MANIFEST_SCHEMA}
        assert con.sql("select sum(net_amount) from marts.fct_orders").fetchall()[0][0] == sum(i * 1.5 for i in range(25))
        manifest = con.sql(f"select publish_id, table_schema, table_name, row_count from {MANIFEST_SCHEMA}.{MANIFEST_TABLE} "
                           "order by all").fetchall()
        phones = con.sql("select count(*) from information_schema.columns where column_name like '%phone%'").fetchall()
    assert manifest == [("first", "marts", "dim_users", 7), ("first", "marts", "fct_orders", 25),
                        ("first", "seeds", "channel_codes", 1)]
    assert phones == [(0,)]
    assert leftovers(target.parent) == []


def test_republishing_replaces_the_file_and_leaves_nothing_behind(tmp_path):
    warehouse, target = tmp_path / "oneid.duckdb", tmp_path / "analyst.duckdb"
    make_warehouse(warehouse, orders=10)
    publish_from(warehouse, target, publish_id="one")
    first_inode = target.stat().st_ino
    make_warehouse(warehouse, orders=40)
    publish_from(warehouse, target, publish_id="two")
    assert target.stat().st_ino != first_inode  # a new file moved in, not the old one rewritten
    with duckdb.connect(str(target), read_only=True) as con:
        assert con.sql("select count(*) from marts.fct_orders").fetchall() == [(40,)]
        assert con.sql(f"select distinct publish_id from {MANIFEST_SCHEMA}.{MANIFEST_TABLE}").fetchall() == [("two",)]
    assert leftovers(tmp_path) == []


def test_disk_full_keeps_the_previous_file_and_removes_the_temp_file(tmp_path, monkeypatch):
    warehouse, target = tmp_path / "oneid.duckdb", tmp_path / "analyst.duckdb"
    make_warehouse(warehouse, orders=10)
    publish_from(warehouse, target, publish_id="good")
    before = target.read_bytes()
    make_warehouse(warehouse, orders=99)

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(publish_module.os, "replace", full_disk)
    with pytest.raises(PublishError) as raised:
        publish_from(warehouse, target)
    assert str(target.resolve()) in str(raised.value)
    assert "No space left" in str(raised.value)
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    with duckdb.connect(str(target), read_only=True) as con:
        assert con.sql("select count(*) from marts.fct_orders").fetchall() == [(10,)]


def test_unwritable_target_folder_raises_a_clear_error(tmp_path):
    warehouse = tmp_path / "oneid.duckdb"
    make_warehouse(warehouse, orders=3)
    not_a_folder = tmp_path / "plain-file"
    not_a_folder.write_text("in the way")
    with pytest.raises(PublishError, match="plain-file"):
        publish_from(warehouse, not_a_folder / "analyst.duckdb")
    assert not_a_folder.read_text() == "in the way"


def test_a_warehouse_without_marts_publishes_nothing(tmp_path):
    warehouse, target = tmp_path / "oneid.duckdb", tmp_path / "analyst.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema raw")
        con.execute("create table raw.orders as select 1 as x")
    with pytest.raises(PublishError, match="no marts"):
        publish_from(warehouse, target)
    assert not target.exists()


READER = textwrap.dedent(
    """
    import sys, time, duckdb
    path, allowed, seconds = sys.argv[1], {int(n) for n in sys.argv[2].split(",")}, float(sys.argv[3])
    reads, errors, wrong = 0, [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with duckdb.connect(path, read_only=True) as con:
                rows = con.sql("select count(*) from marts.fct_orders").fetchall()[0][0]
                noted = con.sql("select row_count from oneid.published_tables "
                                "where table_schema = 'marts' and table_name = 'fct_orders'").fetchall()[0][0]
                users = con.sql("select count(*) from marts.dim_users").fetchall()[0][0]
        except Exception as error:
            errors.append(repr(error))
            continue
        reads += 1
        if rows not in allowed or noted != rows or users != min(rows, 7):
            wrong.append((rows, noted, users))
    print(reads, len(errors), len(wrong))
    for line in (errors + [repr(w) for w in wrong])[:5]:
        print(line)
    """
)


def test_a_reader_in_another_process_always_sees_one_complete_publication(tmp_path):
    warehouse, target = tmp_path / "oneid.duckdb", tmp_path / "analyst.duckdb"
    versions = [1_000 + 37 * i for i in range(6)]
    make_warehouse(warehouse, orders=versions[0])
    publish_from(warehouse, target)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(target), ",".join(map(str, versions)), "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    publications = 0
    deadline = time.monotonic() + 7
    while time.monotonic() < deadline:
        make_warehouse(warehouse, orders=versions[publications % len(versions)])
        publish_from(warehouse, target)
        publications += 1
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    reads, errors, wrong = map(int, out.split("\n")[0].split())
    assert publications >= 5
    assert reads >= 20, out
    assert (errors, wrong) == (0, 0), out
