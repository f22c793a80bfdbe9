"""config/expectations.yml → plain rule specs, one list per raw table.

Nothing here imports Great Expectations: the rules are data, checked against the raw contract (the columns of
``pipelines.ingest.catalog``) when the file is read, so a misspelt column fails the load with the file, table
and rule named, rather than failing every night in a check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Mapping

import yaml

from pipelines.ingest.catalog import CANONICAL_SOURCES, table_columns

KINDS = ("not_null", "any_not_null", "regex", "in_set", "between", "plausible_time", "a_ge_b")
SEVERITIES = ("error", "warn")
TIME_TYPES = ("TIMESTAMP", "DATE")
NUMBER_TYPES = ("INTEGER", "BIGINT", "DECIMAL(18,2)")

DEFAULT_EARLIEST_TIME = "2010-01-01"
DEFAULT_FUTURE_TOLERANCE_HOURS = 24
DEFAULT_MAX_ROWS = 2_000_000
DEFAULT_UNEXPECTED_EXAMPLES = 5


class ValidationConfigError(ValueError):
    """config/expectations.yml is inconsistent with itself or with the raw contract."""


@dataclass(frozen=True)
class RuleSpec:
    """One expectation on one column (or one pair of columns) of one raw table."""

    table: str
    kind: str
    column: str | None = None
    column_b: str | None = None  # only for a_ge_b: column >= column_b
    any_of: tuple[str, ...] = ()  # only for any_not_null: `column` is then derived, coalesce(any_of...)
    severity: str = "error"
    pattern: str | None = None
    pattern_name: str | None = None
    values: tuple[Any, ...] = ()
    min: Any = None
    max: Any = None
    mostly: float = 1.0
    why: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """The raw table's columns the rule reads."""
        if self.any_of:
            return self.any_of
        return tuple(c for c in (self.column, self.column_b) if c)

    @property
    def derived_sql(self) -> str | None:
        """SQL computing the rule's own column, for rules on a combination of columns."""
        if self.any_of:
            return "coalesce(" + ", ".join(f'"{c}"' for c in self.any_of) + ")"
        return None

    @property
    def name(self) -> str:
        """A short stable name for the UI and metadata keys, e.g. ``paid_amount>=refunded_amount``."""
        if self.kind == "not_null":
            return f"{self.column} not null"
        if self.kind == "any_not_null":
            return f"{' or '.join(self.any_of)} not null"
        if self.kind == "regex":
            return f"{self.column} matches {self.pattern_name or 'pattern'}"
        if self.kind == "in_set":
            return f"{self.column} in allowed set"
        if self.kind == "between":
            return f"{self.column} in range"
        if self.kind == "plausible_time":
            return f"{self.column} plausible time"
        return f"{self.column} >= {self.column_b}"

    def describe(self) -> str:
        """The rule in words: what a reader of a failed check needs to know."""
        if self.kind == "not_null":
            text = f"{self.column} must not be NULL"
        elif self.kind == "any_not_null":
            text = f"at least one of {', '.join(self.any_of)} must not be NULL"
        elif self.kind == "regex":
            text = f"{self.column} must match {self.pattern_name or 'the pattern'} /{self.pattern}/"
        elif self.kind == "in_set":
            text = f"{self.column} must be one of {', '.join(map(str, self.values))}"
        elif self.kind == "between":
            bounds = [f">= {self.min}"] if self.min is not None else []
            bounds += [f"<= {self.max}"] if self.max is not None else []
            text = f"{self.column} must be {' and '.join(bounds)}"
        elif self.kind == "plausible_time":
            text = f"{self.column} must lie between {self.min} and the load time + tolerance"
        else:
            text = f"{self.column} must be >= {self.column_b} where both are present"
        if self.mostly < 1:
            text += f" (for at least {self.mostly:.0%} of rows)"
        return text


@dataclass(frozen=True)
class ValidationConfig:
    tables: Mapping[str, tuple[RuleSpec, ...]]
    earliest_time: date = date.fromisoformat(DEFAULT_EARLIEST_TIME)
    future_tolerance_hours: float = DEFAULT_FUTURE_TOLERANCE_HOURS
    max_rows: int = DEFAULT_MAX_ROWS
    unexpected_examples: int = DEFAULT_UNEXPECTED_EXAMPLES
    formats: Mapping[str, str] = field(default_factory=dict)

    def rules(self, table: str) -> tuple[RuleSpec, ...]:
        return self.tables.get(table, ())

    def columns(self, table: str) -> tuple[str, ...]:
        """Columns a table's suite reads, in table order."""
        needed = {c for rule in self.rules(table) for c in rule.columns}
        return tuple(name for name, _ in table_columns(table) if name in needed)

    def derived(self, table: str) -> dict[str, str]:
        """Columns the suite computes from others (name → SQL), e.g. ``a|b`` → ``coalesce(a, b)``."""
        return {rule.column: rule.derived_sql for rule in self.rules(table) if rule.derived_sql}


def _date(value: Any, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValidationConfigError(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_rules(
    table: str, entries: Any, formats: Mapping[str, str], earliest_time: date, where: str = "expectations"
) -> tuple[RuleSpec, ...]:
    """The rule specs of one table's YAML entries, one spec per column; raises on anything inconsistent."""
    if table not in CANONICAL_SOURCES:
        raise ValidationConfigError(f"{where}: unknown raw table {table!r}; known: {', '.join(CANONICAL_SOURCES)}")
    types = dict(table_columns(table))
    if not isinstance(entries, list):
        raise ValidationConfigError(f"{where}.tables.{table}: expected a list of rules")
    specs: list[RuleSpec] = []
    for index, entry in enumerate(entries):
        at = f"{where}.tables.{table}[{index}]"
        if not isinstance(entry, Mapping):
            raise ValidationConfigError(f"{at}: expected a mapping with `expect:`")
        entry = dict(entry)
        kind = entry.pop("expect", None)
        if kind not in KINDS:
            raise ValidationConfigError(f"{at}: expect must be one of {', '.join(KINDS)}, got {kind!r}")
        severity = entry.pop("severity", "error")
        if severity not in SEVERITIES:
            raise ValidationConfigError(f"{at}: severity must be error or warn, got {severity!r}")
        mostly = float(entry.pop("mostly", 1.0))
        if not 0 < mostly <= 1:
            raise ValidationConfigError(f"{at}: mostly must be in (0, 1], got {mostly}")
        why = entry.pop("why", None)
        common = {"table": table, "kind": kind, "severity": severity, "mostly": mostly, "why": why}

        if kind == "a_ge_b":
            pair = (entry.pop("column_a", None), entry.pop("column_b", None))
            for column in pair:
                if column not in types:
                    raise ValidationConfigError(f"{at}: column {column!r} is not a column of raw.{table}")
            targets = [{"column": pair[0], "column_b": pair[1]}]
        elif kind == "any_not_null":
            columns = _as_list(entry.pop("columns", None) or [])
            if len(columns) < 2:
                raise ValidationConfigError(f"{at}: any_not_null needs `columns` with two or more columns")
            for column in columns:
                if column not in types:
                    raise ValidationConfigError(f"{at}: column {column!r} is not a column of raw.{table}")
            targets = [{"column": "|".join(columns), "any_of": tuple(columns)}]
        else:
            columns = _as_list(entry.pop("columns", None) or entry.pop("column", None) or [])
            if not columns:
                raise ValidationConfigError(f"{at}: give `column` or `columns`")
            for column in columns:
                if column not in types:
                    raise ValidationConfigError(f"{at}: column {column!r} is not a column of raw.{table}")
            targets = [{"column": c} for c in columns]

        extra: dict[str, Any] = {}
        if kind == "regex":
            pattern, name = entry.pop("pattern", None), entry.pop("format", None)
            if name is not None:
                if name not in formats:
                    raise ValidationConfigError(f"{at}: format {name!r} is not in `formats`")
                pattern = formats[name]
            if not pattern:
                raise ValidationConfigError(f"{at}: regex needs `pattern` or `format`")
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValidationConfigError(f"{at}: bad regex {pattern!r}: {e}") from None
            extra = {"pattern": pattern, "pattern_name": name}
        elif kind == "in_set":
            values = entry.pop("values", None)
            if not isinstance(values, list) or not values:
                raise ValidationConfigError(f"{at}: in_set needs a non-empty `values` list")
            extra = {"values": tuple(values)}
        elif kind == "between":
            low, high = entry.pop("min", None), entry.pop("max", None)
            if low is None and high is None:
                raise ValidationConfigError(f"{at}: between needs `min` and/or `max`")
            extra = {"min": low, "max": high}
            for target in targets:
                if types[target["column"]] not in NUMBER_TYPES:
                    raise ValidationConfigError(f"{at}: {target['column']} is not numeric; use plausible_time")
        elif kind == "plausible_time":
            low = _date(entry.pop("min"), at) if "min" in entry else earliest_time
            extra = {"min": low}
            for target in targets:
                if types[target["column"]] not in TIME_TYPES:
                    raise ValidationConfigError(f"{at}: {target['column']} is not a TIMESTAMP or DATE column")
        if entry:
            raise ValidationConfigError(f"{at}: unknown keys {', '.join(sorted(entry))}")
        specs.extend(RuleSpec(**common, **target, **extra) for target in targets)
    return tuple(specs)


def parse_config(data: Mapping[str, Any], where: str = "expectations") -> ValidationConfig:
    """A ValidationConfig from the parsed YAML document (a dict)."""
    if not isinstance(data, Mapping):
        raise ValidationConfigError(f"{where}: expected a mapping at the top level")
    unknown = set(data) - {"defaults", "formats", "tables"}
    if unknown:
        raise ValidationConfigError(f"{where}: unknown top-level keys {', '.join(sorted(unknown))}")
    defaults = dict(data.get("defaults") or {})
    formats = {str(k): str(v) for k, v in (data.get("formats") or {}).items()}
    earliest = _date(defaults.pop("earliest_time", DEFAULT_EARLIEST_TIME), f"{where}.defaults.earliest_time")
    tolerance = float(defaults.pop("future_tolerance_hours", DEFAULT_FUTURE_TOLERANCE_HOURS))
    max_rows = int(defaults.pop("max_rows", DEFAULT_MAX_ROWS))
    examples = int(defaults.pop("unexpected_examples", DEFAULT_UNEXPECTED_EXAMPLES))
    if defaults:
        raise ValidationConfigError(f"{where}.defaults: unknown keys {', '.join(sorted(defaults))}")
    if max_rows < 1 or examples < 0 or tolerance < 0:
        raise ValidationConfigError(f"{where}.defaults: max_rows >= 1, unexpected_examples and tolerance >= 0")
    tables = {
        str(table): parse_rules(str(table), entries, formats, earliest, where)
        for table, entries in (data.get("tables") or {}).items()
    }
    return ValidationConfig(
        tables=tables, earliest_time=earliest, future_tolerance_hours=tolerance, max_rows=max_rows,
        unexpected_examples=examples, formats=formats,
    )


def load_config(path: Path) -> ValidationConfig:
    """Read config/expectations.yml (or another file of that shape)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValidationConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_config(data or {}, where=path.name)
