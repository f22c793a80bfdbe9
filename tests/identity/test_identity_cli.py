import gzip
import importlib.metadata
import io
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from identity.cli import main

OBSERVATIONS = """source,record_id,id_type,scope,id_value,observed_at,strength
oa_followers,wxoa/oA1,openid,wxoa,oA1,2024-01-01 10:00:00,
oa_followers,wxoa/oA1,unionid,,oU1,2024-01-01 10:00:00,
mp_logins,000017,unionid,,oU1,2024-01-02 10:00:00,
mp_logins,000017,phone,,+86 139 1234 5678,2024-01-02 10:00:00,
crm_members,M1,member_id,demo_crm,M1,2024-01-03 10:00:00,
crm_members,M1,phone,,13912345678,2024-01-03 10:00:00,strong
orders,miniprogram_shop/9,phone,,138****5678,,weak
orders,miniprogram_shop/10,phone,,13800138000,,
"""

TRUTH = """source,record_id,person_id
oa_followers,wxoa/oA1,p1
mp_logins,000017,p1
crm_members,M1,p1
orders,miniprogram_shop/9,p1
orders,miniprogram_shop/10,p2
"""


def test_resolve_then_evaluate(tmp_path, capsys):
    observations = tmp_path / "obs.csv"
    observations.write_text(OBSERVATIONS, encoding="utf-8")
    out = tmp_path / "new" / "folder" / "record_map.csv"  # folders are made, as for --out-dir
    out_dir = tmp_path / "tables"
    assert main(["resolve", "--observations", str(observations), "--out", str(out), "--out-dir", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "5 records" in printed
    # what the messy values cost, by reason
    assert "observations that link nothing: 2 (1 junk, 1 masked; see their unusable_reason)" in printed

    record_map = pl.read_csv(out, infer_schema=False)
    assert record_map.columns == ["source", "record_id", "user_id"]
    assert "000017" in record_map["record_id"].to_list()  # leading zeros survive
    assert record_map["user_id"].n_unique() == 3
    for name in ["observations", "record_map", "id_map", "rejected_links", "blocked_values"]:
        assert (out_dir / f"{name}.csv").exists()
    stats = json.loads((out_dir / "stats.json").read_text())
    assert stats["users"] == 3 and stats["values_blocked"] == 1

    truth = tmp_path / "truth.csv.gz"
    with gzip.open(truth, "wt", encoding="utf-8") as handle:
        handle.write(TRUTH)
    assert main(["evaluate", "--predicted", str(out), "--truth", str(truth), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["precision"] == 1.0
    assert scores["recall"] == 0.5  # 3 of the 6 true pairs: the masked-phone order stays apart
    assert main(["evaluate", "--predicted", str(out), "--truth", str(truth)]) == 0
    assert "precision 1.0000" in capsys.readouterr().out


def test_config_errors_exit_nonzero(tmp_path, capsys):
    observations = tmp_path / "obs.csv"
    observations.write_text(OBSERVATIONS, encoding="utf-8")
    config = tmp_path / "identity.yml"
    config.write_text("shared_treshold: 2\n", encoding="utf-8")
    out = tmp_path / "o.csv"
    code = main(["resolve", "--observations", str(observations), "--out", str(out), "--config", str(config)])
    assert code == 1
    assert "shared_treshold" in capsys.readouterr().err


def test_installed_entry_point(tmp_path):
    observations = tmp_path / "obs.csv"
    observations.write_text(OBSERVATIONS, encoding="utf-8")
    out = tmp_path / "out.csv"
    oneid = Path(sys.executable).with_name("oneid")
    command = [str(oneid)] if oneid.exists() else [sys.executable, "-m", "identity.cli"]
    completed = subprocess.run(
        [*command, "resolve", "--observations", str(observations), "--out", str(out)],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert pl.read_csv(out).height == 5


def test_resolve_out_of_core_writes_the_same_record_map(tmp_path, capsys):
    pl.read_csv(io.StringIO(OBSERVATIONS), infer_schema=False).write_parquet(tmp_path / "obs.parquet")
    in_memory, out_of_core, database = tmp_path / "memory.csv", tmp_path / "disk.csv", tmp_path / "oneid.duckdb"
    assert main(["resolve", "--observations", str(tmp_path / "obs.parquet"), "--out", str(in_memory)]) == 0
    args = ["resolve", "--observations", str(tmp_path / "obs.parquet"), "--out", str(out_of_core)]
    assert main([*args, "--out-of-core", str(database), "--out-dir", str(tmp_path / "tables")]) == 0
    printed = capsys.readouterr().out
    assert "5 records" in printed and str(database) in printed
    # said the same way by both runs: in memory, then out of core
    assert printed.count("observations that link nothing: 2 (1 junk, 1 masked; see their unusable_reason)") == 2
    memory, disk = (pl.read_csv(path, infer_schema=False) for path in (in_memory, out_of_core))
    assert disk.equals(memory)
    assert json.loads((tmp_path / "tables" / "stats.json").read_text())["users"] == 3
    # a CSV is streamed the same (gzipped too); Excel is refused with what to do instead
    (tmp_path / "obs.csv").write_text(OBSERVATIONS, encoding="utf-8")
    (tmp_path / "obs.csv.gz").write_bytes(gzip.compress(OBSERVATIONS.encode()))
    for name in ("obs.csv", "obs.csv.gz"):
        assert main(["resolve", "--observations", str(tmp_path / name), "--out-of-core", str(database),
                     "--out", str(out_of_core)]) == 0
        assert pl.read_csv(out_of_core, infer_schema=False).equals(memory)
    assert main(["resolve", "--observations", str(tmp_path / "obs.xlsx"), "--out-of-core", str(database),
                 "--out", str(out_of_core)]) == 2
    assert "reads Parquet or UTF-8 CSV" in capsys.readouterr().err


def test_resolve_notes_id_types_no_rule_or_config_names(tmp_path, capsys):
    observations = tmp_path / "obs.csv"
    observations.write_text(
        "source,record_id,id_type,scope,id_value,observed_at\n"
        "crm,1,Mobile,,13912345678,\ncrm,2, mobile,,139-1234-5678,\ncrm,3,phone,,13912345678,\n"
        "shop,4,loyalty_card,,C001,\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.csv"
    assert main(["resolve", "--observations", str(observations), "--out", str(out)]) == 0
    error = capsys.readouterr().err
    assert "note: id_type mobile (2 rows), loyalty_card (1 rows) is not a type the rules know" in error
    # a misspelt type's values are not normalized nor met by the phone's: three records of one phone, three users
    assert pl.read_csv(out, infer_schema=False)["user_id"].n_unique() == 4
    config = tmp_path / "identity.yml"
    config.write_text("id_type_priority: [unionid, phone, loyalty_card, mobile]\n", encoding="utf-8")
    assert main(["resolve", "--observations", str(observations), "--out", str(out), "--config", str(config)]) == 0
    assert "note:" not in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"oneid {importlib.metadata.version('oneid')}"
