"""OneID ingest: landing-folder exports -> DuckDB ``raw.*`` tables (docs/ingest.md).

Pure library code, no Dagster. ``CANONICAL_SOURCES`` and ``raw_table`` come from ``catalog`` and import
nothing heavy; the rest is imported on first use so that declaring assets stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .catalog import CANONICAL_SOURCES, raw_table

_LAZY = {
    "IngestConfig": "config",
    "ConfigError": "config",
    "Layout": "config",
    "LandingFolder": "config",
    "load_config": "config",
    "ensure_schema": "load",
    "ingest_source": "load",
    "ingest_all": "load",
    "ingest_file": "load",
    "discover_files": "load",
    "SourceReport": "report",
    "FileResult": "report",
}

__all__ = ["CANONICAL_SOURCES", "raw_table", *_LAZY]

if TYPE_CHECKING:
    from .config import ConfigError, IngestConfig, LandingFolder, Layout, load_config
    from .load import discover_files, ensure_schema, ingest_all, ingest_file, ingest_source
    from .report import FileResult, SourceReport


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
