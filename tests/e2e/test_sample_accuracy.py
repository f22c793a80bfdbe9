"""The bundled sample resolves as accurately as the README promises (issue 2: precision ≥ 0.99, recall ≥ 0.95)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

import identity
from pipelines import ingest
from pipelines.observations import read_observations
from pipelines.settings import REPO_ROOT

SAMPLE = REPO_ROOT / "data" / "sample"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def resolution(tmp_path_factory):
    database = tmp_path_factory.mktemp("sample") / "oneid.duckdb"
    config_dir = REPO_ROOT / "config"
    with duckdb.connect(str(database)) as con:
        reports = ingest.ingest_all(con, SAMPLE / "landing", ingest.load_config(config_dir))
        assert not any(report.files_rejected for report in reports.values())
        observations = read_observations(con, config_dir)
    return identity.resolve(observations, identity.load_config(config_dir / "identity.yml"))


def test_bundled_sample_meets_the_accuracy_promise(resolution):
    truth = pl.read_csv(SAMPLE / "truth" / "records.csv.gz", infer_schema=False)
    scores = identity.pairwise_scores(resolution.record_map, truth)
    assert scores["records"] >= 0.99 * truth.height - 50  # malformed rows are in the truth, not in raw
    assert scores["precision"] >= 0.99, scores
    assert scores["recall"] >= 0.95, scores


def test_no_user_is_a_chain_of_strangers(resolution):
    truth = pl.read_csv(SAMPLE / "truth" / "records.csv.gz", infer_schema=False)
    persons_per_user = (
        resolution.record_map.join(truth, on=["source", "record_id"])
        .group_by("user_id")
        .agg(pl.col("person_id").n_unique().alias("persons"))
    )
    # a junk or staff phone would chain many people into one user; a family phone at most a household
    assert persons_per_user["persons"].max() <= 3
