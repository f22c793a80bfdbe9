"""`explain` and the CLI's state options: resolve --state [--incremental], explain --state/--observations."""

import json

import polars as pl

from identity import resolve
from identity.cli import main
from identity.connection import connect
from identity.explain import explain, render
from identity.state import load_state, run

OBSERVATIONS = """source,record_id,id_type,scope,id_value,observed_at,strength
oa_followers,wxoa/oA1,openid,wxoa,oA1,2024-01-01 10:00:00,
oa_followers,wxoa/oA1,unionid,,oU1,2024-01-01 10:00:00,
mp_logins,000017,unionid,,oU1,2024-01-02 10:00:00,
mp_logins,000017,phone,,+86 139 1234 5678,2024-01-02 10:00:00,
crm_members,M1,member_id,demo_crm,M1,2024-01-03 10:00:00,
crm_members,M1,phone,,13912345678,2024-01-03 10:00:00,strong
crm_members,M2,member_id,demo_crm,M2,2024-01-03 10:00:00,
crm_members,M2,phone,,13912345678,2024-01-04 10:00:00,strong
orders,miniprogram_shop/10,phone,,13800138000,,
orders,miniprogram_shop/10,openid,wxmp,oMP9,,
"""

BATCH = """source,record_id,id_type,scope,id_value,observed_at,strength
mp_logins,000099,openid,wxmp,oMP9,2024-05-01 10:00:00,
mp_logins,000099,unionid,,oU1,2024-05-01 10:00:00,
"""


def _tables(tmp_path):
    path = tmp_path / "obs.csv"
    path.write_text(OBSERVATIONS, encoding="utf-8")
    return path


def test_explain_finds_the_user_its_chains_and_the_refused_link(tmp_path):
    observations = pl.read_csv(_tables(tmp_path), infer_schema=False)
    resolution = resolve(observations, links=True)
    tables = {**resolution.tables(), "links": resolution.links}
    result = explain(tables, "phone", "139-1234-5678")
    assert result["status"] == "found"
    assert {row["record_id"] for row in result["records"]} == {"wxoa/oA1", "000017", "M1"}
    chain = result["chains"]["openid\twxoa\toA1"]
    # phone -> login 000017 -> unionid -> follower -> openid
    assert [(step["record_id"], step["link_type"]) for step in chain] == [
        ("000017", "phone"), ("000017", "unionid"), ("wxoa/oA1", "unionid"), ("wxoa/oA1", "openid"),
    ]
    (refused,) = result["rejected"]
    assert refused["record_id"] == "M2" and refused["reason"] == "unique_conflict:member_id"
    text = render(result)
    assert "-- mp_logins/000017" in text and "unique_conflict:member_id" in text

    blocked = explain(tables, "phone", "13800138000")
    assert blocked["status"] == "blocked" and blocked["carriers"][0]["record_id"] == "miniprogram_shop/10"
    assert explain(tables, "phone", "138****1234")["status"] == "unusable"
    # an openid asked without its appid: which scopes to ask with
    unscoped = explain(tables, "openid", "oA1")
    assert (unscoped["status"], unscoped["reason"], unscoped["scopes"]) == ("unusable", "missing_scope", ["wxoa"])
    assert render(unscoped).endswith("It is an identity with --scope wxoa")
    assert explain(tables, "unionid", "nobody")["status"] == "unknown"


def test_explain_chains_a_hashed_phone_from_the_phone_it_stands_for():
    """A hash's own link can be missing from its user's links: dropped as a repeat of the plain phone's link on the
    same record (M1), or refused on another user's record (M2, whose member id conflicts). Its chains then start
    at the phone it is the digest of, not at a node with no links."""
    import hashlib

    phone = "13912345678"
    md5, sha256 = hashlib.md5(phone.encode()).hexdigest(), hashlib.sha256(phone.encode()).hexdigest()
    rows = [
        ("crm_members", "M1", "member_id", "crm", "M1", "2024-01-01 10:00:00"),
        ("crm_members", "M1", "phone", "", phone, "2024-01-01 10:00:00"),
        ("crm_members", "M1", "phone_md5", "", md5, "2024-01-01 10:00:00"),
        ("crm_members", "M1", "email", "", "m1@example.com", "2024-01-01 10:00:00"),
        ("crm_members", "M2", "member_id", "crm", "M2", "2024-01-02 10:00:00"),
        ("crm_members", "M2", "phone_sha256", "", sha256, "2024-01-02 10:00:00"),
    ]
    columns = ["source", "record_id", "id_type", "scope", "id_value", "observed_at"]
    resolution = resolve(pl.DataFrame(rows, schema=columns, orient="row"), links=True)
    tables = {**resolution.tables(), "links": resolution.links}
    by_phone = explain(tables, "phone", phone)
    for id_type, digest in (("phone_md5", md5), ("phone_sha256", sha256.upper())):
        result = explain(tables, id_type, digest)
        assert result["user_id"] == by_phone["user_id"]
        assert result["chains"] == by_phone["chains"]
        assert [step["record_id"] for step in result["chains"]["email\t\tm1@example.com"]] == ["M1", "M1"]
        assert result["chains_from"] == {"id_type": "phone", "scope": "", "id_value": phone}
        # said in the text too: the chain's first record carries the phone, not necessarily the hash
        assert f"Chains of links from {id_type}:{digest.lower()} (= phone:{phone}):" in render(result)
    assert by_phone["chains_from"] == {"id_type": "phone", "scope": "", "id_value": phone}
    assert f"Chains of links from phone:{phone}:" in render(by_phone)
    # the sha256 was seen on M2 only, whose link to it was refused: shown as another user's record
    (hashed,) = [ident for ident in by_phone["identities"] if ident["id_type"] == "phone_sha256"]
    assert [(seen["record_id"], seen["own_record"]) for seen in hashed["seen"]] == [("M2", False)]
    assert "crm_members/M2  2024-01-02 10:00:00  strong  (another user's record" in render(by_phone)


def test_explain_shows_merge_history(tmp_path):
    observations = pl.read_csv(_tables(tmp_path), infer_schema=False)
    first = run(observations)
    second = run(pl.read_csv(BATCH.encode(), infer_schema=False), state=first.state, incremental=True)
    assert second.run["merges"] == 1
    result = explain(second.state.tables(), "openid", "oMP9", "wxmp")
    (event,) = result["history"]
    assert event["event"] == "merge" and event["new_user_id"] == result["user_id"]
    assert "merge" in render(result)


def test_cli_state_incremental_and_explain(tmp_path, capsys):
    observations = _tables(tmp_path)
    batch = tmp_path / "batch.csv"
    batch.write_text(BATCH, encoding="utf-8")
    state = str(tmp_path / "state.duckdb")
    out = tmp_path / "out.csv"
    assert main(["resolve", "--observations", str(observations), "--out", str(out), "--state", state]) == 0
    first = pl.read_csv(out, infer_schema=False)
    assert "run 1 (full)" in capsys.readouterr().out
    assert main(["resolve", "--observations", str(observations), "--out", str(out), "--state", state]) == 0
    assert pl.read_csv(out, infer_schema=False).equals(first)
    assert "0 new users, 0 merges, 0 splits" in capsys.readouterr().out
    # written by DuckDB from the saved state (the run held only the touched records); a quote in the path is fine
    out = tmp_path / "o'clock.csv"
    code = main(["resolve", "--observations", str(batch), "--out", str(out), "--state", state, "--incremental"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "(incremental): 6 records resolved" in printed
    # the batch's own observations are counted, not the older ones of the records it touched
    assert "observations that link nothing" not in printed
    written = pl.read_csv(out, infer_schema=False)
    assert written.columns == ["source", "record_id", "user_id"] and written.height == first.height + 1
    with connect(state, read_only=True) as con:
        saved = load_state(con).record_map
    assert written.sort("source", "record_id").equals(saved.sort("source", "record_id"))
    assert written.join(first, on=["source", "record_id"], how="anti").height == 1
    # a batch touching nobody: the run holds one record, the outputs still cover every record
    lone = tmp_path / "lone.csv"
    lone.write_text(
        "source,record_id,id_type,scope,id_value,observed_at,strength\n"
        "crm_members,M77,member_id,demo_crm,M77,2024-06-01 10:00:00,\n",
        encoding="utf-8",
    )
    tables = tmp_path / "tables"
    argv = ["--observations", str(lone), "--out", str(out), "--out-dir", str(tables), "--state", state]
    assert main(["resolve", *argv, "--incremental"]) == 0
    assert "(incremental): 1 records resolved" in capsys.readouterr().out
    assert pl.read_csv(out, infer_schema=False).height == first.height + 2
    observed = pl.read_csv(tables / "observations.csv", infer_schema=False)
    assert observed.height == pl.read_csv(observations, infer_schema=False).height + 3

    assert main(["explain", "--id-type", "phone", "--value", "13912345678", "--state", state, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "found" and len(result["history"]) == 1
    assert main(["explain", "--id-type", "phone", "--value", "13912345678", "--observations", str(observations)]) == 0
    assert "Chains of links from phone:13912345678" in capsys.readouterr().out
    assert main(["explain", "--id-type", "unionid", "--value", "nobody", "--state", state]) == 3
    assert main(["resolve", "--observations", str(batch), "--out", str(out), "--incremental"]) == 2


def test_explain_on_the_rows_read_for_one_value_equals_explain_on_the_whole_state(tmp_path):
    """`tables_for_value` reads only the value's user from a state database (what `oneid explain --state` does);
    explain must say the same as on the whole state: found identities (with merges and splits in their history),
    hashed phones in either case, blocked, shared, unusable and unknown values."""
    import random

    import duckdb

    from identity.explain import tables_for_value
    from identity.state import save_changes, save_state
    from tests.identity.test_identity_reference import frame, overlapping_graphs, random_config

    rng = random.Random(4242)
    config = random_config(rng)
    rows = overlapping_graphs(rng)
    rng.shuffle(rows)
    cut = int(len(rows) * 0.8)
    database = tmp_path / "state.duckdb"
    first = run(frame(rows[:cut]), config)
    second = run(frame(rows[cut:]), config, first.state, incremental=True)
    with duckdb.connect(str(database)) as con:
        save_state(con, first.state)
        save_changes(con, second.state, second.changes)
    state = second.state
    assert state.merge_log.height > 0
    queries = [tuple(row) for row in state.id_map.select("id_type", "scope", "id_value").sample(60, seed=1).rows()]
    queries += [(t, s, v.upper()) for t, s, v in state.id_map.filter(pl.col("id_type") == "phone_md5")
                .select("id_type", "scope", "id_value").head(3).rows()]
    queries += [tuple(row) for row in state.blocked_values.select("id_type", "scope", "id_value").head(5).rows()]
    queries += [("phone", "", "139****5678"), ("unionid", "", "nobody"), ("openid", "nowhere", "o1")]
    queries += [("openid", "", v) for v in state.id_map.filter(pl.col("id_type") == "openid")["id_value"].head(3)]
    statuses = set()
    with duckdb.connect(str(database), read_only=True) as con:
        for id_type, scope, value in queries:
            part = tables_for_value(con, id_type, value, scope, config)
            assert part["record_map"].height < state.record_map.height
            expected = explain(state.tables(), id_type, value, scope, config)
            assert explain(part, id_type, value, scope, config) == expected, (id_type, scope, value)
            statuses.add(expected["status"])
            if expected["status"] == "found" and expected["history"]:
                statuses.add("history")
    assert statuses == {"found", "history", "blocked", "unusable", "unknown"}


def test_explain_without_a_state_in_the_database(tmp_path, capsys):
    import duckdb

    from identity.explain import tables_for_value

    database = tmp_path / "empty.duckdb"
    with duckdb.connect(str(database)) as con:
        assert tables_for_value(con, "phone", "13912345678") is None
    assert main(["explain", "--id-type", "phone", "--value", "13912345678", "--state", str(database)]) == 1
    assert "holds no identity state" in capsys.readouterr().err


def test_a_state_open_in_another_process_gets_a_clear_error(tmp_path, capsys):
    """A pipeline run holding the warehouse open for writing: explain says so instead of a DuckDB traceback."""
    import subprocess
    import sys

    import duckdb

    database = tmp_path / "busy.duckdb"
    duckdb.connect(str(database)).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; con = duckdb.connect({str(database)!r}); print('open', "
         "flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        assert main(["explain", "--id-type", "phone", "--value", "13912345678", "--state", str(database)]) == 1
    finally:
        holder.kill()
        holder.wait()
    error = capsys.readouterr().err
    assert f"{database} is open in another process" in error and "Conflicting lock" in error
