"""The command line: every NoiseRates field has a flag, arguments are checked, output matches the API."""

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from samplegen import NoiseRates, generate
from samplegen.cli import build_parser, flag_name, main


def test_every_noise_rate_has_a_flag():
    parser = build_parser()
    flags = {s for a in parser._actions for s in a.option_strings}
    for f in fields(NoiseRates):
        assert flag_name(f.name) in flags
    assert {"--users", "--seed", "--out", "--start", "--end", "--referral-rate"} <= flags


def test_flags_reach_the_manifest(tmp_path):
    assert main(["--users", "1000", "--seed", "11", "--out", str(tmp_path), "--quiet", "--gift-order-rate", "0.2",
                 "--malformed-rate", "0", "--start", "2024-06-01", "--end", "2024-11-30"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["noise"]["gift_order"] == 0.2 and manifest["noise"]["malformed"] == 0.0
    assert manifest["start"] == "2024-06-01" and manifest["reexport_date"] == "2024-12-14"
    assert (tmp_path / "landing" / "orders_miniprogram" / "orders_20240601_20241130.csv").exists()
    assert (tmp_path / "landing" / "oa_followers" / "user_info_20241214.jsonl").exists()


def test_cli_equals_api(tmp_path):
    assert main(["--users", "1000", "--seed", "4", "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    generate(tmp_path / "api", users=1000, seed=4)
    for p in sorted((tmp_path / "api").rglob("*")):
        if p.is_file():
            assert p.read_bytes() == (tmp_path / "cli" / p.relative_to(tmp_path / "api")).read_bytes()


@pytest.mark.parametrize("args", [
    ["--masked-phone-rate", "1.5"],
    ["--junk-phone-rate", "0.5", "--phone-format-rate", "0.6"],
    ["--start", "2025-02-30"],
    ["--activity", "0"],
    ["--activity", "25"],
    ["--activity", "often"],
])
def test_bad_arguments_exit_2(tmp_path, args, capsys):
    with pytest.raises(SystemExit) as exc:
        code = main(["--users", "1000", "--seed", "1", "--out", str(tmp_path), "--quiet", *args])
        raise SystemExit(code)
    assert exc.value.code == 2


def test_refuses_foreign_landing_files(tmp_path):
    foreign = tmp_path / "landing" / "oa_followers" / "real_export.jsonl"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("{}\n")
    assert main(["--users", "1000", "--seed", "1", "--out", str(tmp_path), "--quiet"]) == 1
    assert foreign.read_text() == "{}\n"


def test_python_dash_m(tmp_path):
    out = subprocess.run([sys.executable, "-m", "samplegen", "--help"], capture_output=True, text=True, check=True)
    assert "--family-phone-rate" in out.stdout and "--users" in out.stdout


def test_noise_rates_validate():
    with pytest.raises(ValueError):
        NoiseRates(two_phones=-0.1)
    with pytest.raises(ValueError):
        NoiseRates(refund_full=0.5, cancelled=0.6)
