"""The bundled sample brand (data/sample, written by samplegen to the same contract) loads completely."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import pytest

from pipelines.ingest import CANONICAL_SOURCES, ingest_all

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample"

pytestmark = pytest.mark.skipif(not (SAMPLE / "landing").is_dir(), reason="data/sample/landing not generated")


@pytest.fixture(scope="module")
def sample(config):
    con = duckdb.connect(":memory:")
    reports = ingest_all(con, SAMPLE / "landing", config)
    yield con, reports
    con.close()


def test_sample_loads_with_no_rejected_file(sample):
    con, reports = sample
    assert set(reports) == set(CANONICAL_SOURCES)
    for source, report in reports.items():
        assert report.files_rejected == 0, report.summary()
        assert report.files_loaded >= 1 and report.rows_loaded > 0, source
        # The sample brand has no Youzan, Douyin or generic-CSV shop.
        assert set(report.missing_folders) <= {"orders_youzan", "orders_douyin", "orders_generic"}


def test_every_sample_row_is_loaded_or_quarantined(sample):
    con, reports = sample
    manifest_path = SAMPLE / "manifest.json"
    if not manifest_path.exists():
        pytest.skip("no manifest.json")
    files = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    results = {f"landing/{f.path}": f for r in reports.values() for f in r.files}
    for path, info in files.items():
        if not path.startswith("landing/") or path.startswith("landing/wecom_contacts/"):
            continue  # WeCom lines explode into one raw row per staff member
        res = results[path]
        assert res.rows_loaded + res.rows_quarantined == info["rows"], path


def test_sample_quarantine_holds_only_the_planted_defects(sample):
    con, _ = sample
    reasons = {r[0].split(" (")[0] for r in con.execute("SELECT DISTINCT reason FROM raw.quarantine").fetchall()}
    assert reasons <= {
        "missing required value", "negative amount", "not a whole number of fen",
        "not an amount in yuan", "unparseable time", "unparseable date",
    }


def test_sample_record_ids_match_the_truth_keys(sample):
    con, _ = sample
    truth_path = SAMPLE / "truth" / "records.csv.gz"
    if not truth_path.exists():
        pytest.skip("no truth file")
    with gzip.open(truth_path, "rt", encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
        assert header[:2] == ["source", "record_id"]
        truth = {tuple(line.rstrip("\n").split(",")[:2]) for line in fh}
    for source in CANONICAL_SOURCES:
        ids = {r[0] for r in con.execute(f"SELECT DISTINCT record_id FROM raw.{source}").fetchall()}
        if source == "referrals":
            ids = {f"{i}/{side}" for i in ids for side in ("inviter", "invitee")}
        missing = {i for i in ids if (source, i) not in truth}
        assert not missing, (source, sorted(missing)[:5])
