"""OneID validation: Great Expectations 1.x suites on the `raw` tables (docs/validation.md).

A plain library, no Dagster: ``load_config`` reads config/expectations.yml into rule specs, ``build_suite``
turns a table's specs into a GX suite, ``validate_table`` runs it on the table's rows in DuckDB and returns
per-rule results with masked examples. ``pipelines/defs/checks.py`` wraps it in asset checks. Great
Expectations is imported on first use, so importing this package stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .config import RuleSpec, ValidationConfig, ValidationConfigError, load_config, parse_config
from .masking import mask_phones, mask_value

_LAZY = {
    "build_suite": "suites",
    "build_expectation": "suites",
    "validate_table": "validate",
    "read_rows": "validate",
    "run_suite": "validate",
    "TableValidation": "validate",
    "RuleResult": "validate",
}

__all__ = [
    "RuleSpec", "ValidationConfig", "ValidationConfigError", "load_config", "parse_config", "mask_phones",
    "mask_value", *_LAZY,
]

if TYPE_CHECKING:
    from .suites import build_expectation, build_suite
    from .validate import RuleResult, TableValidation, read_rows, run_suite, validate_table


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
