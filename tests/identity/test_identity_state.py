"""Stable user ids between runs (rule 6): reruns, new people, merges, splits, the merge log, persistence."""

import duckdb
import polars as pl
import pytest

from identity import IdentityConfig, resolve
from identity.resolution import links_frame
from identity.config import BlockRule
import identity.state as state_module
from identity.state import load_state, run, save_state, write_table


BASE = [
    # person A: two records joined by a unionid, first seen 2024-01-01
    ("oa_followers", "a1", "openid", "wxoa", "oA", "2024-01-01 10:00:00"),
    ("oa_followers", "a1", "unionid", "", "uA", "2024-01-01 10:00:00"),
    ("mp_logins", "a2", "unionid", "", "uA", "2024-01-05 10:00:00"),
    ("mp_logins", "a2", "phone", "", "13911110000", "2024-01-05 10:00:00"),
    # person B: a CRM member with a phone, first seen 2024-02-01
    ("crm_members", "b1", "member_id", "crm", "MB", "2024-02-01 10:00:00"),
    ("crm_members", "b1", "phone", "", "13922220000", "2024-02-01 10:00:00"),
    ("orders", "b2", "phone", "", "13922220000", "2024-02-03 10:00:00"),
    ("orders", "b2", "openid", "wxmp", "oMPB", "2024-02-03 10:00:00"),
]


def user_of(result, source, record_id):
    rows = result.resolution.record_map.filter((pl.col("source") == source) & (pl.col("record_id") == record_id))
    return rows["user_id"].item()


def test_first_run_with_state_gives_the_stateless_ids(make_observations):
    obs = make_observations(BASE)
    first = run(obs)
    assert first.resolution.record_map.equals(resolve(obs).record_map)
    assert first.events.height == 0 and first.run["new_users"] == 2 and first.run["run_id"] == 1


def test_rerun_and_shuffled_rerun_change_no_id(make_observations):
    obs = make_observations(BASE)
    first = run(obs)
    again = run(obs, state=first.state)
    shuffled = run(obs.sample(fraction=1.0, shuffle=True, seed=3), state=again.state)
    for result in (again, shuffled):
        assert result.resolution.record_map.equals(first.resolution.record_map)
        assert result.resolution.id_map.equals(first.resolution.id_map)
        assert result.events.height == 0 and result.run["new_users"] == 0
    assert shuffled.run["run_id"] == 3


def test_new_person_gets_a_new_id_and_nobody_else_changes(make_observations):
    first = run(make_observations(BASE))
    more = BASE + [("crm_members", "c1", "member_id", "crm", "MC", "2024-03-01 10:00:00")]
    second = run(make_observations(more), state=first.state)
    old = first.resolution.record_map
    assert second.resolution.record_map.join(old, on=["source", "record_id"], how="semi").equals(old)
    assert second.run["new_users"] == 1 and second.events.height == 0
    assert user_of(second, "crm_members", "c1") not in set(old["user_id"])


def test_merge_keeps_the_id_of_the_user_first_seen_and_logs_the_link(make_observations):
    first = run(make_observations(BASE))
    a, b = user_of(first, "oa_followers", "a1"), user_of(first, "crm_members", "b1")
    # a login carrying A's unionid and B's phone, seen later than both
    bridge = [
        ("mp_logins", "x1", "unionid", "", "uA", "2024-04-01 10:00:00"),
        ("mp_logins", "x1", "phone", "", "13922220000", "2024-04-01 10:00:00"),
    ]
    second = run(make_observations(BASE + bridge), state=first.state)
    assert set(second.resolution.record_map["user_id"]) == {a}
    (event,) = second.events.iter_rows(named=True)
    assert event["event"] == "merge" and event["old_user_id"] == b and event["new_user_id"] == a
    assert event["run_id"] == 2 and event["reason"] == "link"
    assert (event["source"], event["record_id"]) == ("mp_logins", "x1")
    assert event["id_type"] in ("phone", "unionid")
    registry = second.state.user_ids.filter(pl.col("user_id") == b).row(0, named=True)
    assert registry["retired_run"] == 2 and registry["retired_into"] == a
    assert second.state.merge_log.height == 1 and second.run["merges"] == 1


def test_merge_winner_is_first_seen_even_when_the_other_is_bigger(make_observations):
    rows = BASE + [("orders", f"b{k}", "phone", "", "13922220000", "2024-02-09 10:00:00") for k in range(3, 9)]
    first = run(make_observations(rows))
    a = user_of(first, "oa_followers", "a1")
    bridge = [("orders", "b2", "phone", "", "13911110000", "2024-05-01 10:00:00")]
    second = run(make_observations(rows + bridge), state=first.state)
    assert user_of(second, "orders", "b8") == a


# A CRM card and a mini-program login joined only by one phone: blocking the phone splits them.
CRM_AND_LOGIN_SHARING_A_PHONE = [
    ("crm_members", "m1", "member_id", "crm", "M1", "2024-01-01 10:00:00"),
    ("crm_members", "m1", "phone", "", "13933330000", "2024-01-01 10:00:00"),
    ("mp_logins", "l1", "phone", "", "13933330000", "2024-01-02 10:00:00"),
    ("mp_logins", "l1", "unionid", "", "uL", "2024-01-02 10:00:00"),
    ("mp_logins", "l1", "openid", "wxmp", "oL", "2024-01-02 10:00:00"),
]


def test_split_keeps_the_id_on_the_part_with_most_identities_and_logs_the_blocked_value(make_observations):
    rows = CRM_AND_LOGIN_SHARING_A_PHONE
    first = run(make_observations(rows))
    (before,) = set(first.resolution.record_map["user_id"])
    config = IdentityConfig(blocklist={"phone": BlockRule(values=("13933330000",))})
    second = run(make_observations(rows), config, state=first.state)
    # the login holds unionid + openid (2 identities), the CRM row only its member id: the login keeps the id
    assert user_of(second, "mp_logins", "l1") == before
    crm_user = user_of(second, "crm_members", "m1")
    assert crm_user != before
    (event,) = second.events.iter_rows(named=True)
    assert (event["event"], event["old_user_id"], event["new_user_id"]) == ("split", before, crm_user)
    assert event["reason"] == "blocked:blocklist" and event["id_value"] == "13933330000"
    assert second.run["splits"] == 1 and second.run["new_users"] == 1


def test_a_retired_id_is_never_handed_out_again(make_observations):
    rows = CRM_AND_LOGIN_SHARING_A_PHONE
    first = run(make_observations(rows))
    blocked = IdentityConfig(blocklist={"phone": BlockRule(values=("13933330000",))})
    second = run(make_observations(rows), blocked, state=first.state)
    # unblocking merges the two parts again: one id survives, the other is retired for good
    third = run(make_observations(rows), state=second.state)
    assert third.run["merges"] == 1
    fourth = run(make_observations(rows), blocked, state=third.state)
    issued_before = set(third.state.user_ids["user_id"])
    new_ids = set(fourth.resolution.record_map["user_id"]) - set(third.resolution.record_map["user_id"])
    assert len(new_ids) == 1 and not (new_ids & issued_before)
    assert fourth.state.user_ids["user_id"].is_unique().all()


def test_state_survives_a_duckdb_round_trip(make_observations, tmp_path):
    first = run(make_observations(BASE))
    with duckdb.connect(str(tmp_path / "state.duckdb")) as con:
        assert load_state(con) is None
        save_state(con, first.state)
    with duckdb.connect(str(tmp_path / "state.duckdb")) as con:
        state = load_state(con)
        query = "select table_schema || '.' || table_name from information_schema.tables"
        tables = {row[0] for row in con.sql(query).fetchall()}
    assert {"identity.merge_log", "identity.runs", "identity_state.user_ids", "identity.links"} <= tables
    for name, table in first.state.tables().items():
        assert getattr(state, name).equals(table.cast(getattr(state, name).schema)), name
    again = run(make_observations(BASE), state=state)
    assert again.resolution.record_map.equals(first.resolution.record_map)


def test_incremental_needs_a_state_and_the_same_config(make_observations):
    with pytest.raises(ValueError, match="needs a state"):
        run(make_observations(BASE), incremental=True)
    first = run(make_observations(BASE))
    with pytest.raises(ValueError, match="config changed"):
        run(make_observations(BASE[:2]), IdentityConfig(shared_threshold=2), first.state, incremental=True)


@pytest.mark.parametrize("rows", [0, 1, 4, 5])
def test_write_table_in_slices_gives_the_whole_frame(rows):
    frame = pl.DataFrame(
        {"n": list(range(rows)), "text": [f"v{i}" for i in range(rows)]}, schema={"n": pl.Int64, "text": pl.String}
    )
    con = duckdb.connect()
    con.execute("create schema s")
    con.execute("create table s.t as select 1 as old")  # replaced, not appended to
    write_table(con, "s", "t", frame, slice_rows=2)
    assert con.sql("select * from s.t order by n").pl().equals(frame)


def test_staged_state_loads_in_slices_and_a_failed_load_keeps_the_previous_state(
    make_observations, tmp_path, monkeypatch
):
    first = run(make_observations(BASE))
    second = run(make_observations(BASE + [("orders", "c1", "phone", "", "13933330000", "2024-03-01 10:00:00")]),
                 state=first.state)
    database = str(tmp_path / "state.duckdb")
    with duckdb.connect(database) as con:
        save_state(con, first.state)
    monkeypatch.setattr(state_module, "WRITE_SLICE_ROWS", 3)  # several files per table
    staged = state_module.stage_state(second.state, tmp_path / "staged")
    assert staged.rows["observations"] == second.state.observations.height
    assert len(list((tmp_path / "staged" / "identity" / "observations").glob("*.parquet"))) > 1
    # a damaged file: the load fails part-way and nothing of the second state is published
    damaged = sorted((tmp_path / "staged" / "identity" / "users").glob("*.parquet"))[0]
    damaged.write_bytes(b"not parquet")
    with duckdb.connect(database) as con:
        with pytest.raises(duckdb.Error):
            state_module.load_staged(con, staged)
        kept = load_state(con)
    assert kept.runs.height == 1 and kept.observations.height == first.state.observations.height
    staged = state_module.stage_state(second.state, tmp_path / "again")
    with duckdb.connect(database) as con:
        state_module.load_staged(con, staged)
        loaded = load_state(con)
    assert loaded.runs.height == 2
    for name, table in second.state.tables().items():
        key = list(loaded.tables()[name].columns)
        assert getattr(loaded, name).sort(key, nulls_last=True).equals(
            links_frame(table).cast(getattr(loaded, name).schema).sort(key, nulls_last=True)
        ), name


def test_create_table_sql_names_the_zstd_and_uncompressed_columns():
    sql = state_module.create_table_sql("identity", "links", [("source", "VARCHAR"), ("id_value", "VARCHAR")],
                                        zstd=("id_value",))
    assert sql == (
        'create or replace table "identity"."links" ("source" VARCHAR, "id_value" VARCHAR using compression zstd)'
    )
    sql = state_module.create_table_sql("main", "id_map", [("id_type", "VARCHAR"), ("user_id", "VARCHAR")],
                                        uncompressed=("user_id",))
    assert sql == (
        'create or replace table "main"."id_map" ("id_type" VARCHAR, "user_id" VARCHAR using compression uncompressed)'
    )


def test_staged_links_keep_their_text_in_zstd_and_old_files_load_without_it(make_observations, tmp_path):
    first = run(make_observations(BASE))
    staged = state_module.stage_state(first.state, tmp_path / "staged")
    query = (
        "select distinct compression from pragma_storage_info('identity.links') "
        "where column_name = 'id_value' and segment_type = 'VARCHAR'"
    )
    with duckdb.connect(str(tmp_path / "new.duckdb")) as con:
        state_module.load_staged(con, staged)
        con.execute("checkpoint")
        assert con.sql(query).fetchall() == [("ZSTD",)]
        assert state_module.storage_version(con) >= state_module.ZSTD_STORAGE_VERSION
    # a warehouse file made for DuckDB 1.0 cannot hold zstd: the tables load with DuckDB's default compression
    con = duckdb.connect()
    con.execute(f"attach '{tmp_path / 'old.duckdb'}' as old (storage_version 'v1.0.0')")
    con.execute("use old")
    assert state_module.storage_version(con) == (1, 0, 0)
    state_module.load_staged(con, staged)
    con.execute("checkpoint")
    assert con.sql(query).fetchall() != [("ZSTD",)]
    loaded = load_state(con)
    assert loaded.links.height == links_frame(first.state.links).height
    con.close()


def test_a_partial_state_serves_full_runs_only(make_observations, tmp_path):
    first = run(make_observations(BASE))
    more = BASE + [("orders", "c1", "phone", "", "13933330000", "2024-03-01 10:00:00")]
    with duckdb.connect(str(tmp_path / "state.duckdb")) as con:
        save_state(con, first.state)
        con.execute("set memory_limit = '3GB'")
        limit = con.sql("select current_setting('memory_limit')").fetchall()
        whole = load_state(con)
        partial = load_state(con, per_row_tables=False)
        # load_state lowers the limit while it copies, and puts the connection's own back
        assert con.sql("select current_setting('memory_limit')").fetchall() == limit
    assert partial.partial and not whole.partial
    assert partial.observations.height == partial.links.height == 0
    assert partial.observations.schema == whole.observations.schema and partial.id_map.equals(whole.id_map)
    with pytest.raises(ValueError, match="without its observations"):
        run(make_observations(more[-1:]), state=partial, incremental=True)
    # a full run needs only the maps and the history: the same ids and events as with the whole state
    from_partial, from_whole = run(make_observations(more), state=partial), run(make_observations(more), state=whole)
    assert from_partial.state.record_map.equals(from_whole.state.record_map)
    assert from_partial.events.equals(from_whole.events) and not from_partial.state.partial


@pytest.mark.parametrize("limit", ["3GB", "1GB", "18.8 GiB", "700MB", "2TB"])
def test_a_memory_limit_set_back_from_its_shown_form_stays_the_same(limit):
    con = duckdb.connect()
    con.execute(f"set memory_limit = '{limit}'")
    shown = con.sql("select current_setting('memory_limit')").fetchall()[0][0]
    for _ in range(3):
        con.execute(f"set memory_limit = '{state_module.restorable_setting(shown)}'")
        assert con.sql("select current_setting('memory_limit')").fetchall()[0][0] == shown


def test_new_cluster_ids_equal_the_one_at_a_time_definition():
    """`_newcomer_ids` gives most clusters their fresh id at once and loops over the rest; the result must be the
    loop over every cluster, including when a salted id is another cluster's fresh id (a forced collision)."""
    from identity.resolution import user_id_for

    def newcomers(pairs):
        return pl.DataFrame(pairs, schema={"fresh": pl.String, "anchor": pl.String}, orient="row").sort("fresh")

    def both(frame, issued, winners, key=None):
        args = (frame, pl.Series(issued, dtype=pl.String), pl.Series(winners, dtype=pl.String), key)
        fast, slow = state_module._newcomer_ids(*args), state_module._newcomer_ids_in_order(*args)
        assert fast.to_list() == slow.to_list()
        assert fast.is_unique().all() and not set(fast) & set(issued) and not set(fast) & set(winners)
        return fast.to_list()

    anchors = [f"phone\t\t1391111{i:04d}" for i in range(40)]
    plain = [(user_id_for(a), a) for a in anchors]
    # nothing taken: every cluster keeps its fresh id
    assert both(newcomers(plain), [], []) == sorted(f for f, _ in plain)
    # some fresh ids issued before or kept by old users, one anchor's first salted id issued too
    issued = [plain[3][0], plain[7][0], user_id_for(plain[3][1] + "#1"), "u_0000000000000000"]
    out = both(newcomers(plain), issued, [plain[11][0]])
    assert user_id_for(plain[3][1] + "#2") in out and user_id_for(plain[7][1] + "#1") in out
    # forced collision: a cluster whose fresh id is the salted id another cluster would take
    salted = user_id_for(plain[3][1] + "#1")
    collided = newcomers(plain + [(salted, "phone\t\t13999999999")])
    out = both(collided, [plain[3][0]], [])
    if salted < plain[3][0]:  # the colliding cluster comes first and keeps its id: the other salts twice
        assert salted in out and user_id_for(plain[3][1] + "#2") in out
    else:  # the salted id went first: the colliding cluster takes its own anchor's id
        assert salted in out and user_id_for("phone\t\t13999999999") in out
    for key in (None, b"k" * 32):
        keyed = [(user_id_for(a, key), a) for a in anchors]
        both(newcomers(keyed), [keyed[0][0], keyed[5][0]], [keyed[9][0]], key)


def test_a_split_into_equal_parts_leaves_the_id_with_the_smaller_fresh_id(make_observations):
    """Rule 6's ties: both parts hold one identity and one record, so the part whose fresh (anchor) id is smaller
    keeps the old id, and the other is logged as split off with an id of its own."""
    from identity.resolution import user_id_for

    bridge = ("orders", "o3", "phone", "", "13955550001", "2024-01-03 10:00:00")
    rows = [
        ("orders", "o1", "phone", "", "13955550001", "2024-01-01 10:00:00"),
        ("orders", "o2", "phone", "", "13955550002", "2024-01-02 10:00:00"),
        bridge,
        ("orders", "o3", "phone", "", "13955550002", "2024-01-03 10:00:00"),
    ]
    first = run(make_observations(rows))
    (before,) = set(first.resolution.record_map["user_id"])
    second = run(make_observations(rows[:2]), state=first.state)
    own = {phone: user_id_for(f"phone\t\t{phone}") for phone in ("13955550001", "13955550002")}
    keeper, other = sorted(own, key=own.get)
    record_of = {"13955550001": "o1", "13955550002": "o2"}
    assert user_of(second, "orders", record_of[keeper]) == before
    split_off = user_of(second, "orders", record_of[other])
    assert split_off != before
    (event,) = second.events.iter_rows(named=True)
    assert (event["event"], event["old_user_id"], event["new_user_id"]) == ("split", before, split_off)
