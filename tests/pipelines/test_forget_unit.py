"""forget refuses identifiers that belong to many people, and the ingest filter drops exactly tombstoned rows."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

import identity
from identity.privacy import DEMO_KEY, identity_hmac
from pipelines.forget import TombstoneFilter, delete_quarantine, forget, normalize_identifiers, person_scope
from pipelines.observations import load_record_specs
from pipelines.settings import REPO_ROOT

KEY = DEMO_KEY.encode()
SPECS = load_record_specs(REPO_ROOT / "config" / "observations.yml")
CONFIG = identity.load_config(REPO_ROOT / "config" / "identity.yml")


def _given(*rows):
    return pl.DataFrame(rows, schema={"id_type": pl.String, "scope": pl.String, "value": pl.String}, orient="row")


def test_junk_and_malformed_values_are_refused_by_line_without_echoing_them():
    with pytest.raises(ValueError, match="lines 1, 3") as error:
        normalize_identifiers(_given(("phone", "", "13800138000"), ("phone", "", "+86 139 1234 5678"),
                                     ("phone", "", "12")), CONFIG)
    assert "13800138000" not in str(error.value)
    ok = normalize_identifiers(_given(("phone", "", "+86 139 1234 5678")), CONFIG)
    assert set(ok["id_type"]) == {"phone", "phone_md5", "phone_sha256"}
    assert "13912345678" in ok["id_value"].to_list()


def test_a_shared_value_is_refused_and_nothing_changes():
    con = duckdb.connect()
    con.execute("create schema identity")
    con.execute("create table identity.blocked_values as select 'phone' as id_type, '' as scope, "
                "'13912345678' as id_value, 'shared' as reason, 40 as records")
    with pytest.raises(ValueError, match="blocked.*shared"):
        forget(con, _given(("phone", "", "13912345678")), SPECS, CONFIG, KEY)
    assert con.sql("select count(*) from information_schema.schemata where schema_name = 'privacy'"
                   ).fetchall()[0][0] == 0


def test_tombstone_filter_drops_rows_carrying_any_forgotten_identifier():
    tombstones = {identity_hmac(KEY, "phone", "", "13912345678"),
                  identity_hmac(KEY, "openid", "wxmp0000000demo01", "oGONE")}
    drop = TombstoneFilter(tombstones, SPECS, CONFIG, KEY)
    rows = pl.DataFrame({
        "record_id": ["1", "2", "3", "4"],
        "appid": ["wxmp0000000demo01", "wxmp0000000demo01", "wxOTHERAPP", "wxmp0000000demo01"],
        "openid": ["oGONE", "oKEEP", "oGONE", "oKEEP2"],
        "unionid": [None, None, None, None],
        "phone": [None, None, None, "+86 139-1234-5678"],
    })
    kept, dropped = drop("mp_logins", rows)
    # the same openid in another app is another person; a phone counts in any export form
    assert dropped == 2 and kept["record_id"].to_list() == ["2", "3"]
    assert TombstoneFilter(set(), SPECS, CONFIG, KEY)("mp_logins", rows) == (rows, 0)


def _scope_world() -> duckdb.DuckDBPyConnection:
    """P's phone is on mp/r1 and crm/m1; r1's openid is also on r2 (someone resolution merged with P); r3 is not P."""
    con = duckdb.connect()
    con.execute("create schema identity")
    con.execute(
        "create table identity.observations (source varchar, record_id varchar, id_type varchar, scope varchar, "
        "id_value varchar, raw_value varchar)"
    )
    con.execute(
        "insert into identity.observations values "
        "('mp', 'r1', 'phone', '', '13912345678', '139 1234 5678'), ('mp', 'r1', 'unionid', '', 'U1', 'U1'), "
        "('mp', 'r1', 'openid', 'wxapp', 'O1', 'O1'), ('crm', 'm1', 'phone', '', '13912345678', '13912345678'), "
        "('crm', 'm1', 'member_id', 'crm', 'M1', 'M1'), ('mp', 'r2', 'openid', 'wxapp', 'O1', 'O1'), "
        "('mp', 'r2', 'phone', '', '13700000001', '13700000001'), ('mp', 'r2', 'phone', '', null, '137****0001'), "
        "('mp', 'r3', 'unionid', '', 'U3', 'U3')"
    )
    con.execute(
        "create table identity.record_map as select * from (values ('mp', 'r1', 'A'), ('crm', 'm1', 'A'), "
        "('mp', 'r2', 'A'), ('mp', 'r3', 'B')) t(source, record_id, user_id)"
    )
    con.execute(
        "create table identity.id_map as select * from (values ('phone', '', '13912345678', 'A'), "
        "('unionid', '', 'U1', 'A'), ('openid', 'wxapp', 'O1', 'A'), ('member_id', 'crm', 'M1', 'A'), "
        "('phone', '', '13700000001', 'A'), ('unionid', '', 'U3', 'B')) t(id_type, scope, id_value, user_id)"
    )
    return con


def test_person_scope_takes_the_identities_only_the_persons_records_carry():
    con = _scope_world()
    given = normalize_identifiers(_given(("phone", "", "13912345678"), ("unionid", "", "never-seen")), CONFIG)
    identities, records, unknown = person_scope(con, given)
    assert sorted(records.iter_rows()) == [("crm", "m1"), ("mp", "r1")]
    # O1 is also on r2, which is not the person's: it stays; the phone's hashed forms go with the phone
    assert sorted((t, v) for t, _, v in identities.iter_rows() if not t.startswith("phone_")) == [
        ("member_id", "M1"), ("phone", "13912345678"), ("unionid", "U1"), ("unionid", "never-seen")]
    assert identities.filter(pl.col("id_type").str.starts_with("phone_")).height == 2
    assert unknown == 3  # the unseen unionid and the phone's two hashes, which no export carried


def test_person_scope_of_the_whole_user_takes_every_record_and_identity_it_holds():
    con = _scope_world()
    given = normalize_identifiers(_given(("phone", "", "13912345678")), CONFIG)
    identities, records, _ = person_scope(con, given, whole_user=True)
    assert sorted(records.iter_rows()) == [("crm", "m1"), ("mp", "r1"), ("mp", "r2")]
    assert sorted(v for t, _, v in identities.iter_rows() if not t.startswith("phone_")) == [
        "13700000001", "13912345678", "M1", "O1", "U1"]


def test_quarantine_rows_holding_the_persons_phone_in_any_spelling_are_deleted():
    con = duckdb.connect()
    con.execute("create schema raw")
    kept = ["13900000000", "139 0000 1111", "not a phone", None]
    gone = ["13912345678x", "+86 139-1234-5678", "139\u200b1234\u20145678", "(139) 1234.5678", "tel 13912345678"]
    con.execute("create table raw.quarantine (row_number integer, raw_value varchar)")
    con.executemany("insert into raw.quarantine values (?, ?)", list(enumerate(kept + gone)))
    identities = pl.DataFrame({"id_value": ["13912345678"]})
    assert delete_quarantine(con, identities, raw_values=[]) == len(gone)
    left = con.sql("select raw_value from raw.quarantine order by row_number").fetchall()
    assert [row[0] for row in left] == kept
