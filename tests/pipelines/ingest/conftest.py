from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines.ingest import IngestConfig, ingest_all, ingest_source, load_config

REPO = Path(__file__).resolve().parents[3]
CONFIG_DIR = REPO / "config"


@pytest.fixture(scope="session")
def config() -> IngestConfig:
    return load_config(CONFIG_DIR)


@pytest.fixture
def con():
    connection = duckdb.connect(":memory:")
    yield connection
    connection.close()


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    root = tmp_path / "landing"
    root.mkdir()
    return root


class Runner:
    """Small helper so tests read as 'drop files, run ingest, look at tables'."""

    def __init__(self, con: duckdb.DuckDBPyConnection, landing: Path, config: IngestConfig):
        self.con, self.landing, self.config = con, landing, config

    def source(self, source: str):
        return ingest_source(self.con, source, self.landing, self.config)

    def all(self):
        return ingest_all(self.con, self.landing, self.config)

    def rows(self, sql: str, params=None) -> list[dict]:
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def count(self, table: str) -> int:
        return self.con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]

    def counts(self) -> dict[str, int]:
        tables = ["oa_followers", "mp_logins", "wecom_contacts", "orders", "crm_members", "referrals",
                  "quarantine", "load_log"]
        return {t: self.count(f"raw.{t}") for t in tables}


@pytest.fixture
def run(con, landing, config) -> Runner:
    return Runner(con, landing, config)
