"""Where OneID reads and writes, resolved once from the environment.

Every path can be overridden by one environment variable so that tests, the demo and a brand's production
run share the same code. Relative paths are taken from the repository root, not the current directory,
because Dagster, dbt and the tests all start in different places.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

DATABASE_ENV = "ONEID_DATABASE"
LANDING_ENV = "ONEID_LANDING_DIR"
CONFIG_ENV = "ONEID_CONFIG_DIR"
TRUTH_ENV = "ONEID_TRUTH_FILE"

DEFAULT_DATABASE = "data/oneid.duckdb"
DEFAULT_LANDING = "data/sample/landing"
DEFAULT_CONFIG = "config"
DEFAULT_TRUTH = "data/sample/truth/records.csv.gz"

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


def _path_from_env(name: str, default: str) -> Path:
    path = Path(os.environ.get(name) or default).expanduser()
    return path if path.is_absolute() else (REPO_ROOT / path)


@dataclass(frozen=True)
class Settings:
    database: Path
    landing_dir: Path
    config_dir: Path
    truth_file: Path

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            database=_path_from_env(DATABASE_ENV, DEFAULT_DATABASE),
            landing_dir=_path_from_env(LANDING_ENV, DEFAULT_LANDING),
            config_dir=_path_from_env(CONFIG_ENV, DEFAULT_CONFIG),
            truth_file=_path_from_env(TRUTH_ENV, DEFAULT_TRUTH),
        )

    def export_for_dbt(self) -> None:
        """dbt's profile reads the database path from the environment, so it must be absolute and set."""
        os.environ[DATABASE_ENV] = str(self.database)
