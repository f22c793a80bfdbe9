"""resolve_out_of_core() against resolve(): the same tables, row for row, on random graphs and on blocked,
shared, hashed and bare records; also from Parquet files read in batches."""

import gzip
import hashlib
import random

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from identity.config import IdentityConfig
from identity.outofcore import OUTPUT_TABLES, resolve_out_of_core
from identity.resolution import resolve
from tests.identity.test_identity_reference import frame, overlapping_graphs, random_config, random_graph


def _tables(database) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(database), read_only=True) as con:
        return {table: con.sql(f"select * from {table}").pl() for table in OUTPUT_TABLES}


def _assert_same(expected, database, stats):
    got = _tables(database)
    wanted = {**expected.tables(), "users": expected.users}
    for table in OUTPUT_TABLES:
        assert got[table].columns == wanted[table].columns, table
        assert_frame_equal(got[table], wanted[table].cast(got[table].schema), check_dtypes=False)
    assert stats == expected.stats


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_random_graphs_give_the_tables_of_resolve(tmp_path, seed):
    rng = random.Random(seed)
    config = random_config(rng)
    observations = frame([row for graph in range(300) for row in random_graph(rng, graph)])
    key = b"k" * 32 if seed % 2 else None
    result = resolve_out_of_core(observations, tmp_path / "oneid.duckdb", config, id_key=key, batch_rows=997)
    _assert_same(resolve(observations, config, id_key=key), tmp_path / "oneid.duckdb", result.stats)


@pytest.mark.parametrize("seed", [1, 2])
def test_overlapping_random_graphs_give_the_tables_of_resolve(tmp_path, seed):
    rng = random.Random(777_000 + seed)
    config = random_config(rng)
    observations = frame(overlapping_graphs(rng))
    result = resolve_out_of_core(observations, tmp_path / "oneid.duckdb", config, batch_rows=97)
    _assert_same(resolve(observations, config), tmp_path / "oneid.duckdb", result.stats)


def test_parquet_files_in_batches_and_a_rerun_replaces_the_tables(tmp_path):
    rng = random.Random(11)
    config = random_config(rng)
    observations = frame([row for graph in range(400) for row in random_graph(rng, graph)])
    half = observations.height // 2
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    observations[:half].write_parquet(paths[0], row_group_size=300)
    observations[half:].write_parquet(paths[1], row_group_size=300)
    database = tmp_path / "oneid.duckdb"
    resolve_out_of_core(observations.head(50), database, config)
    result = resolve_out_of_core(paths, database, config, batch_rows=500)
    _assert_same(resolve(observations, config), database, result.stats)
    with duckdb.connect(str(database), read_only=True) as con:
        tables = {row[0] for row in con.execute("select table_name from information_schema.tables").fetchall()}
    assert tables == set(OUTPUT_TABLES)  # the intermediate tables were temporary: none is left in the file


def test_blocked_shared_hashed_and_bare_records(tmp_path):
    rows = [
        # a front-desk phone on the records of four unionids: shared at threshold 3
        *[("crm", f"c{k}", "unionid", "", f"U{k}", f"2024-01-0{k + 1}", None) for k in range(4)],
        *[("crm", f"c{k}", "phone", "", "13700000001", f"2024-01-0{k + 1}", None) for k in range(4)],
        # a junk phone and a masked one: each record is a user of its own
        ("orders", "o1", "phone", "", "13800138000", None, None),
        ("orders", "o2", "phone", "", "139****5678", None, None),
        # the md5 of a plain phone seen elsewhere: the two records merge through it
        ("ads", "a1", "phone_md5", "", hashlib.md5(b"13912345678").hexdigest(), None, None),
        ("shop", "s1", "phone", "", "13912345678", "2024-02-01", "weak"),
        ("shop", "s1", "openid", "wxmp", "oMP1", "2024-02-01", None),
    ]
    observations = frame(rows)
    config = IdentityConfig(shared_threshold=3)
    result = resolve_out_of_core(observations, tmp_path / "oneid.duckdb", config, batch_rows=3)
    expected = resolve(observations, config)
    _assert_same(expected, tmp_path / "oneid.duckdb", result.stats)
    tables = _tables(tmp_path / "oneid.duckdb")
    assert set(tables["blocked_values"]["reason"]) == {"shared", "junk"}
    users = dict(zip(tables["record_map"]["record_id"], tables["record_map"]["user_id"]))
    assert users["a1"] == users["s1"] and users["o1"] != users["o2"]



def test_joins_on_the_strings_when_hashes_collide(tmp_path, monkeypatch):
    """Records and keys are joined on 64-bit hashes, and on the strings when two distinct ones share a hash. A
    real collision cannot be made on purpose, so the hash joins are made to collide (hashes compared modulo 3):
    the extra rows must be noticed, and the string joins must give the same tables."""
    import identity.outofcore as outofcore

    joins = outofcore.link_join_conditions
    assert "_rh" in joins(True)[0] and "record_id" in joins(False)[0]
    asked = []

    def colliding(on_hashes):
        asked.append(on_hashes)
        on_record, on_key = joins(on_hashes)
        return on_record.replace("r._rh = o._rh", "r._rh % 3 = o._rh % 3"), on_key

    monkeypatch.setattr(outofcore, "link_join_conditions", colliding)
    rng = random.Random(21)
    config = random_config(rng)
    observations = frame([row for graph in range(200) for row in random_graph(rng, graph)])
    result = outofcore.resolve_out_of_core(observations, tmp_path / "oneid.duckdb", config, batch_rows=500)
    assert asked == [True, False]
    _assert_same(resolve(observations, config), tmp_path / "oneid.duckdb", result.stats)


def test_bad_input_names_the_file_and_rows_and_leaves_no_tables(tmp_path):
    good = frame([("crm", "c1", "phone", "", "13912345678", None, None)] * 5)
    # the fifth row, in the second batch of three: the row is counted in the file
    bad = good.with_columns(strength=pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("sometimes")))
    good.write_parquet(tmp_path / "a.parquet")
    bad.write_parquet(tmp_path / "b.parquet")
    database = tmp_path / "oneid.duckdb"
    resolve_out_of_core(good, database)  # tables from an earlier run
    with pytest.raises(ValueError, match=r"b\.parquet, row 5, column strength: 'sometimes': strength must be strong"):
        resolve_out_of_core(str(tmp_path / "*.parquet"), database, batch_rows=3)
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("select count(*) from information_schema.tables").fetchall() == [(0,)]
    with pytest.raises(FileNotFoundError, match="no files match"):
        resolve_out_of_core(str(tmp_path / "missing-*.parquet"), database)
    # an export saved as CSV under a .parquet name
    (tmp_path / "c.parquet").write_text("source,record_id\ncrm,c1\n")
    with pytest.raises(ValueError, match=r"c\.parquet: not a readable Parquet file"):
        resolve_out_of_core(str(tmp_path / "c.parquet"), database)



def test_a_run_failing_after_the_numbering_leaves_no_tables(tmp_path, monkeypatch):
    """The numbered records and keys are tables in the file (not temporary): a failure must drop them too."""
    import identity.outofcore as outofcore

    def failing(*args, **kwargs):
        raise MemoryError("out of memory in the integers")

    monkeypatch.setattr(outofcore, "_link_integers", failing)
    database = tmp_path / "oneid.duckdb"
    observations = frame([("crm", "c1", "phone", "", "13912345678", None, None)] * 3)
    with pytest.raises(MemoryError):
        resolve_out_of_core(observations, database)
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("select count(*) from information_schema.tables").fetchall() == [(0,)]


@pytest.mark.parametrize(
    "rows",
    [[("orders", "o1", "phone", "", "13800138000", None, None), ("orders", "o2", "phone", "", "-", None, None)], []],
    ids=["nothing-usable", "empty"],
)
def test_nothing_to_link(tmp_path, rows):
    observations = frame(rows)
    result = resolve_out_of_core(observations, tmp_path / "oneid.duckdb")
    _assert_same(resolve(observations), tmp_path / "oneid.duckdb", result.stats)
    assert result.stats["users"] == len(rows)  # a record whose identifiers were all unusable is a user of its own


def test_tables_of_several_row_groups_on_two_threads(tmp_path):
    """The numbers of records and keys are the rowids of tables stored in text order, and the output tables are
    laid beside those positionally: a set spanning several of DuckDB's row groups (122,880 rows), worked on by
    two threads, must still give resolve's tables row for row."""
    from tests.bench_scripts import load_bench

    observations = load_bench("identity").synthetic_observations(600_000, seed=5)
    result = resolve_out_of_core(observations, tmp_path / "oneid.duckdb", threads=2, batch_rows=250_000)
    assert result.stats["records"] > 2 * 122_880 and result.stats["identities"] > 2 * 122_880
    _assert_same(resolve(observations), tmp_path / "oneid.duckdb", result.stats)



def _compression(database, table: str, column: str) -> set[str]:
    with duckdb.connect(str(database), read_only=True) as con:
        rows = con.execute(
            "select distinct compression from pragma_storage_info(?) "
            "where column_name = ? and segment_type = 'VARCHAR'",
            [table, column],
        ).fetchall()
    return {row[0] for row in rows}


def test_random_text_is_stored_with_zstd_or_as_it_is_unless_the_file_is_too_old_for_zstd(tmp_path):
    rng = random.Random(21)
    observations = frame([row for graph in range(200) for row in random_graph(rng, graph)])
    expected = resolve(observations)
    database = tmp_path / "oneid.duckdb"
    result = resolve_out_of_core(observations, database)
    _assert_same(expected, database, result.stats)
    for table, column in (("observations", "id_value"), ("observations", "record_id")):
        assert _compression(database, table, column) == {"ZSTD"}, (table, column)
    for table, column in (("record_map", "user_id"), ("id_map", "id_value"), ("users", "anchor")):
        assert _compression(database, table, column) == {"Uncompressed"}, (table, column)
    assert "ZSTD" not in _compression(database, "observations", "source")  # few distinct values: a dictionary
    # a file made for DuckDB 1.0 cannot hold zstd columns: the same tables, with DuckDB's default compression
    old = tmp_path / "old.duckdb"
    with duckdb.connect() as con:
        con.execute(f"attach '{old}' as old (storage_version 'v1.0.0')")
    result = resolve_out_of_core(observations, old)
    _assert_same(expected, old, result.stats)
    assert "ZSTD" not in _compression(old, "observations", "id_value")


def test_quarantine_sets_bad_rows_aside_counted_in_their_file(tmp_path):
    from identity.normalize import split_observations

    rng = random.Random(5)
    config = random_config(rng)
    observations = frame([row for graph in range(150) for row in random_graph(rng, graph)]).with_row_index("n")
    at_fault = observations["n"] % 37 == 5
    observations = observations.with_columns(
        record_id=pl.when(at_fault & (pl.col("n") % 2 == 0)).then(None).otherwise(pl.col("record_id")),
        observed_at=pl.when(at_fault & (pl.col("n") % 2 == 1)).then(pl.lit("05/06/2024"))
        .otherwise(pl.col("observed_at").cast(pl.String)),
    ).drop("n")
    half = observations.height // 2
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    observations[:half].write_parquet(paths[0])
    observations[half:].write_parquet(paths[1])
    database = tmp_path / "oneid.duckdb"
    result = resolve_out_of_core(paths, database, config, batch_rows=101, quarantine=True)
    kept, _ = split_observations(observations)
    _assert_same(resolve(kept, config), database, result.stats)
    with duckdb.connect(str(database), read_only=True) as con:
        quarantined = con.sql('select * from quarantine order by file, "row"').pl()
    expected = pl.concat([
        split_observations(part)[1].select(pl.lit(str(path)).alias("file"), pl.all())
        for path, part in zip(paths, (observations[:half], observations[half:]))
    ])
    assert quarantined.height == int(at_fault.sum()) > 10
    assert_frame_equal(quarantined, expected.select(quarantined.columns), check_dtypes=False)
    # the row is counted in its file, not in its batch of 101
    assert quarantined["row"].max() > 101
    # a run without it stops at the first bad row and leaves no quarantine table behind
    with pytest.raises(ValueError, match=r"a\.parquet, row \d+, column record_id: empty"):
        resolve_out_of_core(paths, database, config, batch_rows=101)
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("select count(*) from information_schema.tables").fetchall() == [(0,)]


def test_csv_files_are_streamed_with_the_cells_of_read_table(tmp_path):
    from identity.files import read_table

    rng = random.Random(12)
    config = random_config(rng)
    observations = frame([row for graph in range(300) for row in random_graph(rng, graph)])
    half = observations.height // 2
    observations[:half].write_csv(tmp_path / "a.csv")
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(b"\xef\xbb\xbf" + observations[half:].write_csv().encode()))
    database = tmp_path / "oneid.duckdb"
    result = resolve_out_of_core(str(tmp_path / "*.csv*"), database, config, batch_rows=101)
    as_read = pl.concat([read_table(tmp_path / "a.csv"), read_table(tmp_path / "b.csv.gz")])
    _assert_same(resolve(as_read, config), database, result.stats)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("source,record_id\ncrm,1\n".encode() + "会员".encode("gb18030") + b",2\n",
         r"bad\.csv: not UTF-8 \(line 3, byte 1 \(0xbb\)\); out of core reads CSV in UTF-8 only"),
        (b"source,record_id\ncrm,1\ncrm,2,3\n", r"bad\.csv: line 3 has 3 fields, the header 2"),
        (b"", r"bad\.csv: empty file"),
    ],
)
def test_unreadable_csv_names_the_file_and_line(tmp_path, content, message):
    (tmp_path / "bad.csv").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        resolve_out_of_core(tmp_path / "bad.csv", tmp_path / "oneid.duckdb")
