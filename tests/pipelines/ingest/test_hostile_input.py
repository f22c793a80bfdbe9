"""Every file of the hostile corpus (hostile_cases.py): no crash, good rows loaded, bad rows quarantined with a
reason, unreadable files rejected with a reason, and nothing from a cell executed or interpolated into SQL."""

from __future__ import annotations

import re

import duckdb
import pytest
from hostile_cases import CASES, FORMULA, SQLISH

from pipelines import ingest
from pipelines.ingest.catalog import CANONICAL_SOURCES
from pipelines.settings import REPO_ROOT

MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


@pytest.fixture(scope="module")
def config():
    return ingest.load_config(REPO_ROOT / "config")


def test_corpus_is_large_and_unique():
    assert len(CASES) >= 50
    assert len({c[0] for c in CASES}) == len(CASES) and len({c[1] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_file(case, config, tmp_path):
    name, rel, data, status, good, bad = case
    path = tmp_path / rel
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    source = config.folders[rel.split("/")[0]].source
    con = duckdb.connect()
    report = ingest.ingest_source(con, source, tmp_path, config)

    (result,) = report.files
    assert (result.status, result.rows_loaded, result.rows_quarantined) == (status, good, bad), result.message
    table_rows = con.sql(f"select count(*) from raw.{source}").fetchall()[0][0]
    assert table_rows == good
    quarantine = con.sql("select row_number, reason from raw.quarantine").fetchall()
    assert len({row for row, _ in quarantine}) == bad
    assert all(reason and reason.strip() for _, reason in quarantine)
    (log,) = con.sql("select status, rows_loaded, rows_quarantined, message from raw.load_log").fetchall()
    assert log[:3] == (status, good, bad)
    if status == "rejected":
        assert log[3].startswith(rel + ": ") and len(log[3]) > len(rel) + 5  # says which file and why
    assert not MOBILE.search(log[3] or "")  # a message may reach the UI and the logs
    # no statement from a cell ran: every raw table is still there
    tables = {t for (t,) in con.sql("select table_name from information_schema.tables where table_schema = 'raw'"
                                    ).fetchall()}
    assert set(CANONICAL_SOURCES) <= tables and {"quarantine", "load_log"} <= tables


def _load(tmp_path, config, rel, data):
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    con = duckdb.connect()
    ingest.ingest_source(con, config.folders[rel.split("/")[0]].source, tmp_path, config)
    return con


def test_injection_strings_are_stored_verbatim(config, tmp_path):
    by_name = {c[0]: c for c in CASES}
    con = _load(tmp_path, config, *by_name["sql_in_name"][1:3])
    names = {n for (n,) in con.sql("select receiver_name from raw.orders").fetchall()}
    assert SQLISH.replace(",", " ") in names
    con = _load(tmp_path / "b", config, *by_name["sql_in_order_id"][1:3])
    assert con.sql("select order_id from raw.orders").fetchall() == [("G1'); drop table raw.load_log; --",)]
    con = _load(tmp_path / "c", config, *by_name["formula_in_xlsx_cell"][1:3])
    assert con.sql("select member_name from raw.crm_members").fetchall() == [(FORMULA,)]
    con = _load(tmp_path / "d", config, *by_name["formula_in_openid"][1:3])
    assert (FORMULA.replace(",", ";"),) in con.sql("select openid from raw.mp_logins").fetchall()
