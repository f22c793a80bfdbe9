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
ANALYST_DATABASE_ENV = "ONEID_ANALYST_DATABASE"
SCHEDULE_TIME_ENV = "ONEID_SCHEDULE_TIME"
SCHEDULE_TIMEZONE_ENV = "ONEID_SCHEDULE_TIMEZONE"
AUTOMATION_ENV = "ONEID_AUTOMATION"

DEFAULT_DATABASE = "data/oneid.duckdb"
DEFAULT_LANDING = "data/sample/landing"
DEFAULT_CONFIG = "config"
DEFAULT_TRUTH = "data/sample/truth/records.csv.gz"
# The analyst database sits beside the warehouse unless set, so a warehouse moved elsewhere (tests, a brand's
# own disk) never publishes into the repository's data/ folder.
ANALYST_DATABASE_NAME = "analyst.duckdb"
DEFAULT_SCHEDULE_TIME = "03:00"
DEFAULT_SCHEDULE_TIMEZONE = "Asia/Shanghai"

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
    analyst_database: Path | None = None
    schedule_time: str = DEFAULT_SCHEDULE_TIME
    schedule_timezone: str = DEFAULT_SCHEDULE_TIMEZONE
    automation_running: bool = False

    @classmethod
    def from_env(cls) -> "Settings":
        database = _path_from_env(DATABASE_ENV, DEFAULT_DATABASE)
        return cls(
            database=database,
            landing_dir=_path_from_env(LANDING_ENV, DEFAULT_LANDING),
            config_dir=_path_from_env(CONFIG_ENV, DEFAULT_CONFIG),
            truth_file=_path_from_env(TRUTH_ENV, DEFAULT_TRUTH),
            analyst_database=_path_from_env(ANALYST_DATABASE_ENV, str(database.parent / ANALYST_DATABASE_NAME)),
            schedule_time=os.environ.get(SCHEDULE_TIME_ENV) or DEFAULT_SCHEDULE_TIME,
            schedule_timezone=os.environ.get(SCHEDULE_TIMEZONE_ENV) or DEFAULT_SCHEDULE_TIMEZONE,
            automation_running=(os.environ.get(AUTOMATION_ENV) or "").strip().lower() in {"1", "on", "true", "yes"},
        )

    @property
    def analyst_path(self) -> Path:
        """Where `publish` writes the analyst database (beside the warehouse unless set)."""
        return self.analyst_database or self.database.parent / ANALYST_DATABASE_NAME

    def export_for_dbt(self) -> None:
        """dbt's profile reads the database path from the environment, so it must be absolute and set."""
        os.environ[DATABASE_ENV] = str(self.database)
