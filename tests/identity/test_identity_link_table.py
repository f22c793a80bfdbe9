"""`LinkTable`: the links of a resolution kept as integers must build exactly the table they stand for, whole or
in parts, and travel through stable ids, the warehouse and explain like the DataFrame they replace."""

import duckdb
import numpy as np
import polars as pl
import pytest

from identity import LinkTable, resolve
from identity.explain import explain
from identity.resolution import LINKS_SCHEMA
from identity.state import run, write_table

# two people sharing a family phone (a refused link), a hashed phone that translates, a junk phone, a record
# seen twice, a follower exported again (a redundant link)
OBSERVATIONS = pl.DataFrame(
    [
        ("oa_followers", "f1", "openid", "wxoa", "oA1", "2024-01-01 10:00:00"),
        ("oa_followers", "f1", "unionid", "", "oU1", "2024-01-01 10:00:00"),
        ("mp_logins", "l1", "unionid", "", "oU1", "2024-01-02 10:00:00"),
        ("mp_logins", "l1", "phone", "", "13912345678", "2024-01-02 10:00:00"),
        ("mp_logins", "l2", "unionid", "", "oU2", "2024-01-03 10:00:00"),
        ("mp_logins", "l2", "phone", "", "13912345678", "2024-01-03 10:00:00"),
        ("ad_partner", "a1", "phone_md5", "", "535381ec9d5ab7a390db0a30860600f2", "2024-01-04 10:00:00"),
        ("ad_partner", "a2", "phone_md5", "", "", "2024-01-04 10:00:00"),
        ("orders", "o1", "phone", "", "13800138000", None),
        ("orders", "o1", "openid", "wxmp", "oMP9", None),
        ("orders", "o1", "openid", "wxmp", "oMP9", None),
        ("oa_followers", "f2", "openid", "wxoa", "oA1", "2024-01-06 10:00:00"),
        ("oa_followers", "f2", "unionid", "", "oU1", "2024-01-06 10:00:00"),
        ("crm_members", "m1", "member_id", "crm", "M1", "2024-01-05 10:00:00"),
        ("crm_members", "m1", "phone", "", "139 1234 5678", "2024-01-05 10:00:00"),
    ],
    schema=["source", "record_id", "id_type", "scope", "id_value", "observed_at"],
    orient="row",
)


@pytest.fixture(scope="module")
def resolution():
    return resolve(OBSERVATIONS, links=True)


def test_slices_and_users_build_the_rows_of_the_whole_table(resolution):
    links = resolution.links
    assert isinstance(links, LinkTable)
    whole = links.frame()
    assert whole.schema == pl.Schema(LINKS_SCHEMA) and links.columns == whole.columns
    assert links.height == whole.height == len(links) > 0
    assert set(whole["status"]) == {"joined", "redundant", "rejected"}
    # the partner's md5 links through the plain phone it hashes
    assert whole.filter(pl.col("id_type") == "phone_md5")["link_value"].to_list() == ["13912345678"]
    parts = [links.slice(offset, 3) for offset in range(0, links.height, 3)]
    assert pl.concat(parts).equals(whole)
    assert links.slice(links.height, 3).height == 0
    user = whole["user_id"][0]
    assert links.of_users(pl.Series([user])).equals(whole.filter(pl.col("user_id") == user))
    # any other DataFrame attribute is the built table's
    assert links.filter(pl.col("status") == "rejected").equals(whole.filter(pl.col("status") == "rejected"))


def test_renamed_user_ids_rename_every_row_of_the_user(resolution):
    links = resolution.links
    renamed = links.with_user_ids(links.user_ids.str.replace("^u_", "x_"))
    assert renamed.frame()["user_id"].to_list() == [
        "x_" + user[2:] for user in links.frame()["user_id"].to_list()
    ]
    assert links.frame()["user_id"].str.starts_with("u_").all()  # the original is unchanged


def test_a_link_table_is_written_to_the_warehouse_in_slices(resolution):
    con = duckdb.connect()
    write_table(con, "s", "links", resolution.links, slice_rows=2)
    written = con.sql("select * from s.links").pl()
    key = ["source", "record_id", "link_type", "scope", "link_value"]
    assert written.sort(key).equals(resolution.links.frame().sort(key))


def test_explain_reads_a_link_table_like_a_frame(resolution):
    tables = {**resolution.tables(), "links": resolution.links}
    as_frames = {**tables, "links": resolution.links.frame()}
    for id_type, value in (("phone", "13912345678"), ("openid", "oMP9"), ("unionid", "oU2")):
        assert explain(tables, id_type, value) == explain(as_frames, id_type, value)


def test_a_state_holding_a_link_table_takes_an_incremental_batch():
    first = run(OBSERVATIONS.head(9))
    assert isinstance(first.state.links, LinkTable)
    second = run(OBSERVATIONS.tail(6), state=first.state, incremental=True)
    full = run(OBSERVATIONS, state=first.state)  # a full recompute from the same state
    key = ["source", "record_id", "link_type", "scope", "link_value"]
    assert second.state.links.sort(key).equals(full.state.links.frame().sort(key))


def test_in_memory_incremental_runs_keep_the_untouched_links_as_integers():
    """Batch after batch in memory, the links are a LinkParts whose first part is the full run's LinkTable (rows
    of the untouched users, still integers), and build the same table as a full run over everything."""
    import dataclasses

    from identity.resolution import LinkParts, link_rows_of_users, links_frame, take_links

    columns = ["source", "record_id", "id_type", "scope", "id_value", "observed_at"]
    more = [
        pl.DataFrame([("orders", "o2", "phone", "", "13912345678", "2024-02-01 10:00:00")], schema=columns,
                     orient="row"),
        pl.DataFrame([("crm_members", "m2", "member_id", "crm", "M2", "2024-02-02 10:00:00"),
                      ("crm_members", "m2", "openid", "wxmp", "oMP9", "2024-02-02 10:00:00")], schema=columns,
                     orient="row"),
    ]
    key = ["source", "record_id", "id_type", "scope", "id_value"]
    first = run(OBSERVATIONS).state
    # a state loaded from a database holds its links as a DataFrame: its rows are taken as one part too
    as_loaded = run(more[0], state=dataclasses.replace(first, links=links_frame(first.links)), incremental=True)
    assert isinstance(as_loaded.state.links.parts[0], pl.DataFrame)
    full = run(pl.concat([OBSERVATIONS, more[0]])).state.links
    assert links_frame(as_loaded.state.links).sort(key).equals(links_frame(full).sort(key))
    state, seen = first, OBSERVATIONS
    for batch in more:
        state = run(batch, state=state, incremental=True).state
        seen = pl.concat([seen, batch])
        assert isinstance(state.links, LinkParts) and isinstance(state.links.parts[0], LinkTable)
        assert links_frame(state.links).sort(key).equals(links_frame(run(seen).state.links).sort(key))
    links, whole = state.links, links_frame(state.links)
    # slices across the parts' boundary, the last rows, one user's rows, and rows taken by position
    assert pl.concat([links.slice(offset, 4) for offset in range(0, links.height, 4)]).equals(whole)
    assert links.tail(3).equals(whole.tail(3))
    users = pl.Series([whole["user_id"][0], whole["user_id"][-1]])
    assert links.of_users(users).sort(key).equals(whole.filter(pl.col("user_id").is_in(users.implode())).sort(key))
    rows = link_rows_of_users(links, users)
    assert rows.tolist() == whole["user_id"].is_in(users.implode()).to_list()
    kept = take_links(links, np.flatnonzero(~rows))
    assert links_frame(kept).equals(whole.filter(~pl.Series(rows)))
    # written to the warehouse a slice at a time, as save_state writes it
    with duckdb.connect() as con:
        write_table(con, "identity", "links", links, slice_rows=4)
        assert con.sql("select * from identity.links").pl().equals(whole)


def test_many_parts_are_built_into_one_frame_after_the_first():
    from identity.resolution import LinkParts, links_frame

    links = resolve(OBSERVATIONS, links=True).links
    whole = links.frame()
    pieces = [links.take(np.arange(offset, min(offset + 1, links.height))) for offset in range(links.height)]
    held = LinkParts(pieces)
    assert len(held.parts) == 2 and isinstance(held.parts[0], LinkTable) and isinstance(held.parts[1], pl.DataFrame)
    assert links_frame(held).equals(whole)
