"""The resources every area shares: the warehouse file and the project's settings."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from dagster import ConfigurableResource, InitResourceContext
from dagster_dbt import DbtCliResource
from dagster_duckdb import DuckDBResource
from pydantic import PrivateAttr

from pipelines.defs.dbt import dbt_executable, dbt_project
from identity.connection import without_progress_bar
from identity.privacy import hmac_key
from pipelines.runlock import WarehouseLock
from pipelines.settings import Settings


class LockedDuckDBResource(DuckDBResource):
    """The warehouse, locked for the whole run (pipelines/runlock.py): a second run fails at its start, with the
    lock file's name, instead of colliding with this one half-way. The in-process executor sets the resource up
    once per run, so the lock spans ingest, identity and dbt."""

    _lock: WarehouseLock | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # A run that could not hash phones must fail before it loads anything, not at the identity step.
        hmac_key()
        self._lock = WarehouseLock(Path(self.database)).acquire()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @contextmanager
    def get_connection(self):
        # DuckDB would draw a progress bar on stdout, into the run's logs, for every query over two seconds
        with super().get_connection() as con:
            yield without_progress_bar(con)


class OneIdPaths(ConfigurableResource):
    """Folders a run reads (the landing folder of exports, the user-editable config) and the analyst database
    file it publishes."""

    landing_dir: str
    config_dir: str
    analyst_database: str = ""


def build_resources(settings: Settings | None = None) -> dict:
    settings = settings or Settings.from_env()
    settings.database.parent.mkdir(parents=True, exist_ok=True)
    settings.export_for_dbt()
    return {
        "warehouse": LockedDuckDBResource(database=str(settings.database)),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
        "paths": OneIdPaths(
            landing_dir=str(settings.landing_dir),
            config_dir=str(settings.config_dir),
            analyst_database=str(settings.analyst_path),
        ),
    }
