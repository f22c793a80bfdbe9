"""Rule specs → Great Expectations 1.x expectations and suites (no data, no database)."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from typing import Iterable

# GX sends usage statistics unless told not to; a pipeline that validates brands' data must not phone home.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.execution_engine import pandas_execution_engine  # noqa: E402

# GX fingerprints every pandas batch under 1 GB (pandas' hash of every row, then md5) only to record it as a
# batch marker, which nothing here reads: 15 of the 36 s spent validating 6M login rows. Threshold 0 skips it.
pandas_execution_engine.HASH_THRESHOLD = 0

from .config import RuleSpec  # noqa: E402


def _as_datetime(value: date | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)


def time_bounds(rule: RuleSpec, latest_load: datetime, tolerance_hours: float) -> tuple[datetime, datetime]:
    """The plausible window of a time rule: its earliest time to the latest load time plus the tolerance."""
    return _as_datetime(rule.min), latest_load + timedelta(hours=tolerance_hours)


def epoch_ms(value: datetime) -> float:
    """A naive timestamp as milliseconds since 1970-01-01 (naive, like DuckDB's epoch_ms of a TIMESTAMP).

    Times reach GX as these numbers: its between on datetime columns calls Python once per row (about
    100k rows/s), on numbers it is one vectorized comparison.
    """
    return (value - _EPOCH) / timedelta(milliseconds=1)


def from_epoch_ms(value: float) -> datetime:
    return _EPOCH + timedelta(milliseconds=float(value))


_EPOCH = datetime(1970, 1, 1)


def build_expectation(rule: RuleSpec, index: int, latest_load: datetime, tolerance_hours: float = 24):
    """The GX expectation for one rule. ``meta`` carries the rule's index and severity back to the results."""
    meta = {"rule": index, "severity": rule.severity, "name": rule.name}
    common = {"meta": meta}
    if rule.mostly < 1:
        common["mostly"] = rule.mostly
    if rule.kind in ("not_null", "any_not_null"):  # any_not_null: on the derived column coalesce(any_of...)
        return gxe.ExpectColumnValuesToNotBeNull(column=rule.column, **common)
    if rule.kind == "regex":
        return gxe.ExpectColumnValuesToMatchRegex(column=rule.column, regex=rule.pattern, **common)
    if rule.kind == "in_set":
        return gxe.ExpectColumnValuesToBeInSet(column=rule.column, value_set=list(rule.values), **common)
    if rule.kind == "between":
        return gxe.ExpectColumnValuesToBeBetween(column=rule.column, min_value=rule.min, max_value=rule.max, **common)
    if rule.kind == "plausible_time":
        low, high = time_bounds(rule, latest_load, tolerance_hours)
        meta["window"] = f"{low:%Y-%m-%d} .. {high:%Y-%m-%d %H:%M}"
        return gxe.ExpectColumnValuesToBeBetween(
            column=rule.column, min_value=epoch_ms(low), max_value=epoch_ms(high), **common
        )
    if rule.kind == "a_ge_b":
        return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=rule.column, column_B=rule.column_b, or_equal=True, ignore_row_if="either_value_is_missing",
            **common,
        )
    raise ValueError(f"unknown rule kind {rule.kind!r}")


def build_suite(
    table: str, rules: Iterable[RuleSpec], latest_load: datetime, tolerance_hours: float = 24
) -> gx.ExpectationSuite:
    """One suite per raw table, named ``raw.<table>``, with one expectation per rule in rule order."""
    expectations = [build_expectation(rule, index, latest_load, tolerance_hours) for index, rule in enumerate(rules)]
    # Built whole (add_expectation would need an active data context): the suite stays a plain value.
    return gx.ExpectationSuite(name=f"raw.{table}", expectations=expectations)


def ephemeral_context():
    """An in-memory GX context: nothing written to disk, no progress bars, no usage statistics."""
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)
