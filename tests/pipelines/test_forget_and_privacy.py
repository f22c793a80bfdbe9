"""Deletion end to end, and no phone number in anything analysts or the logs see.

A generated brand plus three fake people: A (a CRM member, phone 1), B (a WeCom contact without unionid whose
remark holds phone 2) and P, whose mini-program account logged in with both phones and placed an order with
his own phone 3. Resolution puts the three into one user: P bridges A and B. `oneid-warehouse forget --id-type
openid` of P deletes P's records, tombstones P's identifiers and rebuilds; then P's old exports are dropped
into the landing folder again (renamed, so their bytes are new) and the pipeline runs again. P must be gone
everywhere, A and B must be two users, and the rows of the replayed files that are not P's must load.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from identity.privacy import DEMO_KEY, identity_hmac
from pipelines.settings import REPO_ROOT

pytestmark = pytest.mark.slow
DRIVER = Path(__file__).with_name("crash_driver.py")
MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
# Hex digests (HMACs, Dagster code/data versions, run ids) and fractional digits of floats hold 11-digit runs
# that are no phone; blanked before scanning so the scan fails only on real numbers.
_NOT_PHONES = re.compile(r"(?=[0-9a-fA-F-]*[a-fA-F])[0-9a-fA-F-]{16,}|(?<=\.)\d+")


def phones_in(text: str) -> list[str]:
    return MOBILE.findall(_NOT_PHONES.sub(" ", text))
APPID, CORP, CRM = "wxmp0000000demo01", "wwcorp00000demo01", "demo_crm"
PHONE_A, PHONE_B, PHONE_P = "19900000101", "19900000202", "19900000303"
OPENID_P, OPENID_C, EXT_B = "oBRIDGE_person_p_0000000000", "oCLEAN_person_c_00000000000", "wmBRIDGE_person_b_000000"
ORDER_P, ORDER_C = "9990000000000001", "9990000000000002"

LOGINS = (
    "log_id,appid,openid,unionid,phone,login_time\n"
    f"9000000001,{APPID},{OPENID_P},,{PHONE_A},2025-03-01 10:00:00\n"
    f"9000000002,{APPID},{OPENID_P},,{PHONE_B},2025-03-02 10:00:00\n"
    f"9000000003,{APPID},{OPENID_C},,,2025-03-03 10:00:00\n"
)
ORDERS = (
    "order_id,appid,openid,unionid,buyer_phone,receiver_name,receiver_phone,order_status,pay_amount_fen,"
    "refund_amount_fen,created_at,paid_at\n"
    f"{ORDER_P},{APPID},{OPENID_P},,{PHONE_P},测试人,{PHONE_P},COMPLETED,12345,0,2025-03-04 10:00:00,2025-03-04 10:01:00\n"
    f"{ORDER_C},{APPID},{OPENID_C},,,测试丙,,COMPLETED,2000,0,2025-03-05 10:00:00,2025-03-05 10:01:00\n"
)
MEMBERS = (
    "\ufeff会员卡号,手机号,姓名,性别,生日,等级,积分,注册时间,消费金额,来源渠道\n"
    f"9900000000001,{PHONE_A},测试甲,女,1990-01-01,普通会员,10,2025-01-01 10:00:00,100.00,\n"
)
CONTACTS = (
    '{"errcode":0,"errmsg":"ok","external_contact":{"external_userid":"' + EXT_B + '","name":"测试乙","type":1,'
    '"gender":1},"follow_user":[{"userid":"staff_01","remark":"","description":"","createtime":1740000000,'
    '"tags":[],"remark_mobiles":["' + PHONE_B + '"],"add_way":1,"state":""}]}\n'
)
P_FILES = {"mp_logins/bridge_logins.csv": LOGINS, "orders_miniprogram/bridge_orders.csv": ORDERS}


def _env(work: Path, landing: Path) -> dict:
    env = {**os.environ, "ONEID_DATABASE": str(work / "oneid.duckdb"), "ONEID_LANDING_DIR": str(landing),
           "DAGSTER_HOME": str(work / "dagster_home")}
    env.pop("ONEID_TEST_CRASH_AT", None)
    return env


def _user(con, id_type: str, scope: str, value: str):
    rows = con.execute(
        "select user_id from identity.id_map where id_type = ? and scope = ? and id_value = ?", [id_type, scope, value]
    ).fetchall()
    return rows[0][0] if rows else None


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("forget")
    subprocess.run([sys.executable, "-m", "samplegen", "--users", "150", "--seed", "5", "--out", str(work)],
                   check=True, capture_output=True, cwd=REPO_ROOT)
    landing = work / "landing"
    (work / "dagster_home").mkdir()
    for rel, text in {**P_FILES, "crm_members/bridge_members.csv": MEMBERS,
                      "wecom_contacts/bridge_contacts.jsonl": CONTACTS}.items():
        (landing / rel).write_text(text, encoding="utf-8")
    env = _env(work, landing)
    logs = []
    first = subprocess.run([sys.executable, str(DRIVER), "upstream"], cwd=REPO_ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    logs.append(first.stdout + first.stderr)
    with duckdb.connect(env["ONEID_DATABASE"], read_only=True) as con:
        before = {
            "a": _user(con, "phone", "", PHONE_A), "b": _user(con, "external_userid", CORP, EXT_B),
            "p": _user(con, "openid", APPID, OPENID_P),
        }
    request = work / "request.csv"
    request.write_text(f"id_type,scope,value\nopenid,{APPID},{OPENID_P}\n", encoding="utf-8")
    forget = subprocess.run([sys.executable, "-m", "pipelines.admin", "forget", "--file", str(request)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert forget.returncode == 0, forget.stdout[-2000:] + forget.stderr[-3000:]
    logs.append(forget.stdout + forget.stderr)
    snapshot = work / "after_forget.duckdb"  # marts of an uninterrupted run, for the dbt crash test
    shutil.copy(env["ONEID_DATABASE"], snapshot)
    # P's old exports come back under new names with new bytes: a re-export, a colleague's copy
    for rel, text in P_FILES.items():
        target = landing / rel.replace("bridge_", "replayed_")
        target.write_text(text + "\n", encoding="utf-8")
    replay = subprocess.run([sys.executable, str(DRIVER), "upstream"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert replay.returncode == 0, replay.stderr[-3000:]
    logs.append(replay.stdout + replay.stderr)
    return {"database": env["ONEID_DATABASE"], "before": before, "forget_output": forget.stdout, "logs": logs,
            "dagster_home": work / "dagster_home", "snapshot": snapshot}


def test_p_bridged_a_and_b_before_the_request(world):
    before = world["before"]
    assert before["a"] is not None and before["a"] == before["b"] == before["p"]


def test_forget_prints_counts_never_values(world):
    out = world["forget_output"]
    assert "records removed: 3" in out  # two logins and one order carry P's openid
    assert "raw.mp_logins: 2 rows deleted" in out and "raw.orders: 1 rows deleted" in out
    for value in (OPENID_P, PHONE_A, PHONE_B, PHONE_P):
        assert value not in out


def test_no_trace_of_p_and_a_b_split(world):
    with duckdb.connect(world["database"], read_only=True) as con:
        tables = con.sql(
            "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' "
            "and table_schema <> 'privacy'"
        ).fetchall()
        traces = []
        p_hmacs = {identity_hmac(DEMO_KEY.encode(), "phone", "", PHONE_P), identity_hmac(DEMO_KEY.encode(), "openid",
                                                                                        APPID, OPENID_P)}
        for schema, table in tables:
            for row in con.sql(f'select * from "{schema}"."{table}"').fetchall():
                text = " ".join(map(str, row))
                if OPENID_P in text or PHONE_P in text or ORDER_P in text or any(h in text for h in p_hmacs):
                    traces.append(f"{schema}.{table}")
        assert not traces, sorted(set(traces))
        a, b = _user(con, "phone", "", PHONE_A), _user(con, "external_userid", CORP, EXT_B)
        assert a and b and a != b
        assert _user(con, "phone", "", PHONE_B) == b and _user(con, "member_id", CRM, "9900000000001") == a
        # the replayed files loaded their other rows and dropped P's, counted without values
        log = con.sql(
            "select source_file, rows_loaded, rows_forgotten, message from raw.load_log "
            "where source_file like '%replayed_%' and status = 'loaded' order by 1"
        ).fetchall()
        assert [(r[0].split("/")[-1], r[1], r[2]) for r in log] == [
            ("replayed_logins.csv", 1, 2), ("replayed_orders.csv", 1, 1)]
        assert all(OPENID_P not in r[3] for r in log)
        assert con.execute("select count(*) from raw.mp_logins where openid = ?", [OPENID_C]).fetchall()[0][0] == 2
        tombstones = con.sql("select count(*) from privacy.tombstones").fetchall()[0][0]
        assert tombstones >= 4  # P's openid, P's own phone and its md5/sha256 forms


def test_marts_and_logs_carry_no_phone_number(world):
    found = []
    with duckdb.connect(world["database"], read_only=True) as con:
        tables = con.sql(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('marts', 'seeds')"
        ).fetchall()
        assert len(tables) > 10
        for schema, table in tables:
            for row in con.sql(f'select * from "{schema}"."{table}"').fetchall():
                found += [f"{schema}.{table}" for cell in row if cell is not None and phones_in(str(cell))]
        masked = con.sql("select phone_masked, phone_hmac from marts.dim_user_phones").fetchall()
        # the check above would miss a mart without phones at all: dim_user_phones really holds masked ones
        assert masked and all(re.fullmatch(r"1[3-9]\d\*{4}\d{4}", m) and len(h) == 64 for m, h in masked)
        # the raw layer does hold phones, so the regex would have found them
        assert con.sql("select count(*) from raw.crm_members where regexp_matches(phone, '1[3-9][0-9]{9}')"
                       ).fetchall()[0][0] > 0
    assert not found, sorted(set(found))
    for log in world["logs"]:
        assert not phones_in(log)
    assert phones_in("u_0f3a run 13912345678 in a1b2c3d4e5f6a7b8c9d0 x") == ["13912345678"]  # the scan works


def test_dagster_event_log_and_metadata_carry_no_phone_number(world, monkeypatch):
    from dagster import DagsterInstance

    monkeypatch.setenv("DAGSTER_HOME", str(world["dagster_home"]))
    instance = DagsterInstance.get()
    runs = instance.get_runs()
    assert runs  # the rebuild of `forget` ran through the persistent instance
    text = []
    for run in runs:
        for entry in instance.all_logs(run.run_id):
            text.append(repr(entry))
    events = "\n".join(text)
    assert "ASSET_CHECK_EVALUATION" in events and "ASSET_MATERIALIZATION" in events
    assert not phones_in(events)


def test_audience_export_is_explicit_and_hashes_segment_phones(world, tmp_path):
    import hashlib

    out = tmp_path / "audience.csv"
    env = {**os.environ, "ONEID_DATABASE": world["database"]}
    done = subprocess.run([sys.executable, "-m", "pipelines.admin", "audience", "--segment", "all", "--hash", "sha256",
                           "--out", str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = out.read_text(encoding="utf-8").splitlines()
    with duckdb.connect(world["database"], read_only=True) as con:
        phones = [r[0] for r in con.sql("select distinct id_value from identity.id_map where id_type = 'phone'"
                                        ).fetchall()]
    assert lines[0] == "phone_sha256"
    assert sorted(lines[1:]) == sorted(hashlib.sha256(p.encode()).hexdigest() for p in phones)
    assert hashlib.sha256(PHONE_P.encode()).hexdigest() not in lines
    assert not phones_in(done.stdout + done.stderr)


def test_run_without_key_fails_with_a_clear_message(tmp_path):
    landing = tmp_path / "landing"
    (landing / "mp_logins").mkdir(parents=True)
    (landing / "mp_logins" / "a.csv").write_text(f"log_id,appid,openid,unionid,phone,login_time\n"
                                                  f"L1,{APPID},{OPENID_C},,,2025-01-01 10:00:00\n")
    env = _env(tmp_path, landing)
    env.pop("ONEID_ALLOW_DEMO_KEY", None)
    env.pop("ONEID_HMAC_KEY", None)
    done = subprocess.run([sys.executable, str(DRIVER), "upstream"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode != 0
    assert "ONEID_HMAC_KEY is not set" in done.stdout + done.stderr
    assert not (tmp_path / "oneid.duckdb").exists()  # failed before loading anything


def test_run_killed_during_dbt_then_rerun_equals_uninterrupted(world, tmp_path):
    """dbt replaces each model atomically; a kill mid-build must leave no half-built or temporary relation."""
    from warehouse_fingerprint import table_fingerprints

    database = tmp_path / "oneid.duckdb"
    shutil.copy(world["snapshot"], database)
    expected = table_fingerprints(world["snapshot"])
    empty_landing = tmp_path / "landing"  # nothing new to load: the run rebuilds the same marts
    empty_landing.mkdir()
    env = {**_env(tmp_path, empty_landing), "ONEID_DATABASE": str(database), "ONEID_TEST_CRASH_AT": "dbt"}
    killed = subprocess.run([sys.executable, str(DRIVER), "all"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=600, start_new_session=True)
    assert killed.returncode in (-9, 137), killed.stderr[-2000:]
    assert "killing the run at dbt" in killed.stderr
    env.pop("ONEID_TEST_CRASH_AT")
    done = subprocess.run([sys.executable, str(DRIVER), "all"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=900, start_new_session=True)
    assert done.returncode == 0, done.stderr[-3000:]
    got = table_fingerprints(database)
    assert sorted(got) == sorted(expected)  # no __dbt_tmp / __dbt_backup relation left behind
    assert {name: got[name] for name in got if got[name] != expected[name]} == {}


PUBLISH_SCRIPT = """
import sys, duckdb
from pipelines.publish import publish
with duckdb.connect(sys.argv[1]) as con:
    publish(con, sys.argv[2])
"""


def test_publish_killed_before_its_replace_leaves_the_previous_analyst_database_then_republishes(world, tmp_path):
    """The analyst file is replaced whole or not at all: a publisher killed with its copy written leaves readers
    the previous file, and the next publish clears the dead publisher's temporary file."""
    import hashlib

    import duckdb

    from pipelines.publish import publish
    from warehouse_fingerprint import table_fingerprints

    database, target = tmp_path / "oneid.duckdb", tmp_path / "analyst.duckdb"
    shutil.copy(world["snapshot"], database)
    with duckdb.connect(str(database)) as con:
        publish(con, target)
    before = hashlib.sha256(target.read_bytes()).hexdigest()
    published = table_fingerprints(target, schemas=("marts", "seeds"))
    env = {**_env(tmp_path, tmp_path), "ONEID_TEST_CRASH_AT": "publish:before_replace"}
    killed = subprocess.run([sys.executable, "-c", PUBLISH_SCRIPT, str(database), str(target)], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=300, start_new_session=True)
    assert killed.returncode in (-9, 137), killed.stderr[-2000:]
    assert "killing the run at publish:before_replace" in killed.stderr
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before
    leftovers = list(tmp_path.glob(".analyst.duckdb.*.tmp"))
    assert len(leftovers) == 1  # the dead publisher's finished copy, never moved into place
    with duckdb.connect(str(database)) as con:
        publish(con, target)
    assert not list(tmp_path.glob(".analyst.duckdb.*.tmp*"))
    assert table_fingerprints(target, schemas=("marts", "seeds")) == published
