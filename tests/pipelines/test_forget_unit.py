"""forget refuses identifiers that belong to many people, and the ingest filter drops exactly tombstoned rows."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

import identity
from identity.privacy import DEMO_KEY, identity_hmac
from pipelines.forget import TombstoneFilter, forget, normalize_identifiers
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
