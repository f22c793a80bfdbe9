"""Reading and validating config/sources.yml and config/layouts.yml.

Everything about an export layout is data so that a new shop's export is a YAML change. This module
turns the YAML into frozen dataclasses and fails early, naming the file and key, when the YAML asks for
something the raw contract does not have (a misspelt column, a status outside the canonical set, ...):
a typo must break `load_config`, not silently load NULLs for months.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .catalog import CANONICAL_COLUMNS, CANONICAL_SOURCES, ORDER_STATUSES

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_DATE_FORMAT = "%Y-%m-%d"
EPOCH_FORMATS = ("unix_seconds", "unix_millis")

TABULAR_FORMATS = ("csv", "xlsx")
JSON_FORMATS = ("jsonl", "json")
FORMATS = TABULAR_FORMATS + JSON_FORMATS

# File suffix -> the format family that can read it. A tabular layout reads both CSV and XLSX files
# because shops hand out the same report either way; the header decides the layout, not the suffix.
SUFFIX_FAMILY = {
    ".csv": "tabular", ".txt": "tabular", ".tsv": "tabular", ".xlsx": "tabular", ".xlsm": "tabular",
    ".xls": "tabular", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
}
FORMAT_FAMILY = {"csv": "tabular", "xlsx": "tabular", "jsonl": "jsonl", "json": "json"}

KIND_BY_SQL_TYPE = {
    "VARCHAR": "string", "INTEGER": "integer", "BIGINT": "bigint", "TIMESTAMP": "timestamp",
    "DATE": "date", "DECIMAL(18,2)": "amount",
}

REFUND_STATES = ("none", "partial", "full")
UNMAPPED_POLICIES = ("quarantine", "null", "keep")
DEFAULT_IGNORE = (".*", "~$*", "*.tmp", "*.part", "*.crdownload")


class ConfigError(ValueError):
    """The YAML config is inconsistent with itself or with the raw contract."""


@dataclass(frozen=True)
class Rule:
    """One `when: ... then: ...` entry of a derived field; conditions are ANDed."""

    then: str | None
    then_field: str | None = None  # `then: {field: paid_amount}`: the value of another field
    equals: tuple[tuple[str, tuple[str | None, ...]], ...] = ()
    has: tuple[str, ...] = ()
    lacks: tuple[str, ...] = ()
    refund: str | None = None


@dataclass(frozen=True)
class FieldSpec:
    """How one canonical column of a raw table is filled from an export."""

    name: str
    kind: str  # string | integer | bigint | timestamp | date | amount (from the contract's SQL type)
    source: str | None  # export column, or dotted JSON path with `[]` marking the list to explode
    required: bool = False
    optional_column: bool = False
    default: str | None = None
    unit: str | None = None  # amount: yuan | fen
    formats: tuple[str, ...] = ()  # timestamp/date: strptime formats, or unix_seconds / unix_millis
    timezone: str = DEFAULT_TIMEZONE
    mapping: tuple[tuple[str, str | None], ...] | None = None
    unmapped: str = "quarantine"
    rules: tuple[Rule, ...] | None = None
    # `from: [A, B]`: the first non-empty of these export columns (Youzan 收货人手机号 / 提货人手机号).
    alternatives: tuple[str, ...] = ()

    @property
    def derived(self) -> bool:
        return self.rules is not None

    @property
    def sources(self) -> tuple[str, ...]:
        """Every export column / JSON path this field reads, first choice first."""
        return ((self.source,) if self.source else ()) + self.alternatives

    @property
    def helper(self) -> bool:
        """`_name` fields are read and usable in rules but not stored (Douyin 售后状态)."""
        return self.name.startswith("_")


@dataclass(frozen=True)
class Check:
    """A value the export carries only to say whether the row is usable (e.g. WeCom `errcode`)."""

    source: str
    allowed: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Layout:
    name: str
    source: str
    format: str
    fields: tuple[FieldSpec, ...]
    record_id: str
    encoding: str | None = None
    separator: str = ","
    quote_char: str | None = '"'
    skip_rows: int = 0
    sheet: str | None = None
    records_path: str | None = None
    null_values: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    description: str = ""
    # Groups of fields of which each row needs at least one (a referral side known by openid OR unionid).
    require_any: tuple[tuple[str, ...], ...] = ()
    # What a JSON record whose exploded list is empty or absent yields: `skip` (a last, empty API page)
    # or `quarantine` (one row with empty list fields, so `required` flags it: a WeCom contact with no staff).
    empty_list: str = "skip"

    @property
    def family(self) -> str:
        return FORMAT_FAMILY[self.format]

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def input_paths(self) -> tuple[str, ...]:
        """Every export column / JSON path the layout reads, in declaration order, without repeats."""
        paths = [p for f in self.fields for p in f.sources] + [c.source for c in self.checks]
        return tuple(dict.fromkeys(paths))

    @property
    def match_groups(self) -> tuple[tuple[str, ...], ...]:
        """What a file must have for this layout to be chosen: one column / path of every group.

        Tabular files must carry every declared column (unless marked `optional`; `from: [A, B]` needs
        one of them); JSON records omit keys freely (an unfollowed OA user is just `subscribe` + `openid`),
        so only required paths count. A `require_any` group needs one column of any of its fields.
        """
        if self.family == "tabular":
            groups = [f.sources for f in self.fields if f.sources and not f.optional_column]
            groups += [(c.source,) for c in self.checks]
        else:
            groups = [f.sources for f in self.fields if f.sources and f.required and not f.optional_column]
        for names in self.require_any:
            groups.append(tuple(p for n in names for p in self.field(n).sources))  # type: ignore[union-attr]
        return tuple(dict.fromkeys(g for g in groups if g))

    @property
    def match_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for g in self.match_groups for p in g))


@dataclass(frozen=True)
class LandingFolder:
    name: str
    path: str
    source: str
    layouts: tuple[str, ...]
    scope: tuple[tuple[str, str], ...] = ()
    ignore: tuple[str, ...] = DEFAULT_IGNORE


@dataclass(frozen=True)
class IngestConfig:
    layouts: Mapping[str, Layout]
    folders: Mapping[str, LandingFolder]
    brand: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sources(self) -> tuple[str, ...]:
        """Canonical sources that at least one landing folder feeds, in contract order."""
        fed = {f.source for f in self.folders.values()}
        return tuple(s for s in CANONICAL_SOURCES if s in fed)

    def folders_for(self, source: str) -> tuple[LandingFolder, ...]:
        if source not in CANONICAL_COLUMNS:
            raise KeyError(f"unknown canonical source {source!r}; known: {', '.join(CANONICAL_SOURCES)}")
        return tuple(f for f in self.folders.values() if f.source == source)


# ----------------------------------------------------------------------------------------------------
# loading


def load_config(config_dir: Path) -> IngestConfig:
    """Read ``sources.yml`` and ``layouts.yml`` from ``config_dir`` and validate them together."""
    config_dir = Path(config_dir)
    layouts_doc = _read_yaml(config_dir / "layouts.yml")
    sources_doc = _read_yaml(config_dir / "sources.yml")
    layouts = parse_layouts(layouts_doc, where=str(config_dir / "layouts.yml"))
    folders, brand = parse_sources(sources_doc, layouts, where=str(config_dir / "sources.yml"))
    return IngestConfig(layouts=layouts, folders=folders, brand=brand)


def _read_yaml(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return doc


def _known_keys(obj: Mapping, allowed: set[str], where: str) -> None:
    unknown = set(obj) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _as_str_tuple(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, int, float)):
        return (str(value),)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    raise ConfigError(f"{where}: expected a string or a list of strings, got {value!r}")


_TEMPLATE_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

LAYOUT_KEYS = {
    "source", "format", "encoding", "separator", "quote_char", "skip_rows", "sheet", "records_path",
    "null_values", "amount_unit", "time_format", "date_format", "timezone", "record_id", "fields", "checks",
    "description", "require_any", "empty_list",
}
FIELD_KEYS = {
    "from", "required", "optional", "default", "unit", "format", "timezone", "map", "unmapped", "rules", "value",
}


def parse_layouts(doc: Mapping, where: str = "layouts.yml") -> dict[str, Layout]:
    _known_keys(doc, {"layouts"}, where)
    raw_layouts = doc.get("layouts")
    if not isinstance(raw_layouts, dict) or not raw_layouts:
        raise ConfigError(f"{where}: `layouts` must be a non-empty mapping of layout name -> definition")
    return {name: _parse_layout(name, spec, f"{where}: layouts.{name}") for name, spec in raw_layouts.items()}


def _parse_layout(name: str, spec: Any, where: str) -> Layout:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping")
    _known_keys(spec, LAYOUT_KEYS, where)
    source = spec.get("source")
    if source not in CANONICAL_COLUMNS:
        raise ConfigError(f"{where}.source: {source!r} is not a raw table; one of {list(CANONICAL_SOURCES)}")
    fmt = spec.get("format")
    if fmt not in FORMATS:
        raise ConfigError(f"{where}.format: {fmt!r}; one of {list(FORMATS)}")
    columns = dict(CANONICAL_COLUMNS[source])

    layout_defaults = {
        "unit": spec.get("amount_unit"),
        "time_format": _as_str_tuple(spec.get("time_format"), f"{where}.time_format") or (DEFAULT_TIME_FORMAT,),
        "date_format": _as_str_tuple(spec.get("date_format"), f"{where}.date_format") or (DEFAULT_DATE_FORMAT,),
        "timezone": spec.get("timezone", DEFAULT_TIMEZONE),
    }
    _check_timezone(layout_defaults["timezone"], f"{where}.timezone")
    if layout_defaults["unit"] not in (None, "yuan", "fen"):
        raise ConfigError(f"{where}.amount_unit: {layout_defaults['unit']!r}; one of yuan, fen")

    raw_fields = spec.get("fields")
    if not isinstance(raw_fields, dict) or not raw_fields:
        raise ConfigError(f"{where}.fields: must be a non-empty mapping of canonical column -> export column")
    fields = []
    for fname, fspec in raw_fields.items():
        fwhere = f"{where}.fields.{fname}"
        if str(fname).startswith("_"):
            kind = "string"  # a helper: read for the rules, not stored
        elif fname not in columns:
            raise ConfigError(f"{fwhere}: raw.{source} has no column {fname!r}; columns: {list(columns)} "
                              f"(name a helper field `_{fname}` to use an export column in rules only)")
        else:
            kind = KIND_BY_SQL_TYPE[columns[fname]]
        fields.append(_parse_field(str(fname), kind, fspec, layout_defaults, fwhere))
    names = {f.name for f in fields}
    order = [f.name for f in fields]

    for f in fields:
        for rule in f.rules or ():
            for ref in [k for k, _ in rule.equals] + list(rule.has) + list(rule.lacks):
                if ref not in names:
                    raise ConfigError(f"{where}.fields.{f.name}.rules: refers to {ref!r}, not a field of this layout")
            if rule.then_field is not None:
                ref = layout_field = rule.then_field
                if ref not in names:
                    raise ConfigError(f"{where}.fields.{f.name}.rules: `then: {{field: {ref}}}` is not a field of this layout")
                if f.kind != next(x.kind for x in fields if x.name == layout_field):
                    raise ConfigError(f"{where}.fields.{f.name}.rules: `then: {{field: {ref}}}` has another type")
            implicit = ["paid_amount", "refunded_amount"] if rule.refund else []
            for ref in [k for k, _ in rule.equals] + list(rule.has) + list(rule.lacks) + [rule.then_field] + implicit:
                other = next((x for x in fields if x.name == ref), None)
                if other is not None and other.derived and order.index(other.name) > order.index(f.name):
                    raise ConfigError(f"{where}.fields.{f.name}.rules: refers to {ref!r}, which is derived later; "
                                      "declare it first")
            if rule.refund and not {"paid_amount", "refunded_amount"} <= names:
                raise ConfigError(f"{where}.fields.{f.name}.rules: `refund` needs paid_amount and refunded_amount")
        if f.name == "order_status" and f.rules is not None:
            bad = [r.then for r in f.rules if r.then not in ORDER_STATUSES or r.then_field]
            if bad:
                raise ConfigError(f"{where}.fields.order_status: {bad} not canonical; one of {list(ORDER_STATUSES)}")
        if f.name == "order_status" and f.mapping is not None:
            bad = [v for _, v in f.mapping if v not in ORDER_STATUSES]
            if bad:
                raise ConfigError(f"{where}.fields.order_status.map: {bad} not canonical; one of {list(ORDER_STATUSES)}")

    record_id = spec.get("record_id")
    if not isinstance(record_id, str) or not _TEMPLATE_REF.search(record_id):
        raise ConfigError(f"{where}.record_id: a template such as '{{platform}}/{{order_id}}' is required")
    for ref in _TEMPLATE_REF.findall(record_id):
        if ref not in columns:
            raise ConfigError(f"{where}.record_id: {{{ref}}} is not a column of raw.{source}")

    require_any = []
    for i, group in enumerate(spec.get("require_any") or []):
        gwhere = f"{where}.require_any[{i}]"
        group = _as_str_tuple(group, gwhere)
        if len(group) < 2 or any(n not in names for n in group):
            raise ConfigError(f"{gwhere}: a list of two or more fields of this layout, got {list(group)}")
        if any(not next(x for x in fields if x.name == n).sources for n in group):
            raise ConfigError(f"{gwhere}: every field must be read from the export (`from`)")
        require_any.append(group)
    empty_list = spec.get("empty_list", "skip")
    if empty_list not in ("skip", "quarantine"):
        raise ConfigError(f"{where}.empty_list: one of skip, quarantine")

    checks = []
    for i, c in enumerate(spec.get("checks") or []):
        cwhere = f"{where}.checks[{i}]"
        if not isinstance(c, dict) or "from" not in c or "allowed" not in c:
            raise ConfigError(f"{cwhere}: expected {{from: ..., allowed: [...], reason: ...}}")
        _known_keys(c, {"from", "allowed", "reason"}, cwhere)
        allowed = _as_str_tuple(c["allowed"], f"{cwhere}.allowed")
        checks.append(Check(str(c["from"]), allowed, str(c.get("reason") or f"value not in {list(allowed)}")))

    family = FORMAT_FAMILY[fmt]
    for f in fields:
        if family == "tabular" and any("[]" in p for p in f.sources):
            raise ConfigError(f"{where}.fields.{f.name}: `[]` list paths only make sense for JSON layouts")
    if family != "tabular":
        _check_json_paths([p for f in fields for p in f.sources] + [c.source for c in checks], where)

    separator = spec.get("separator", ",")
    if separator == "\\t":
        separator = "\t"
    if not isinstance(separator, str) or len(separator) != 1:
        raise ConfigError(f"{where}.separator: a single character")
    encoding = spec.get("encoding")
    if encoding is not None:
        import codecs

        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConfigError(f"{where}.encoding: unknown encoding {encoding!r}") from None

    return Layout(
        name=name,
        source=source,
        format=fmt,
        fields=tuple(fields),
        record_id=record_id,
        encoding=encoding,
        separator=separator,
        quote_char=spec.get("quote_char", '"'),
        skip_rows=int(spec.get("skip_rows", 0)),
        sheet=spec.get("sheet"),
        records_path=spec.get("records_path"),
        null_values=_as_str_tuple(spec.get("null_values"), f"{where}.null_values"),
        checks=tuple(checks),
        description=str(spec.get("description") or ""),
        require_any=tuple(require_any),
        empty_list=empty_list,
    )


def _check_timezone(tz: str, where: str) -> None:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(f"{where}: unknown time zone {tz!r}") from None


def _parse_field(name: str, kind: str, spec: Any, defaults: dict, where: str) -> FieldSpec:
    if isinstance(spec, (str, list)):
        spec = {"from": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected an export column name (or a list of them) or a mapping")
    _known_keys(spec, FIELD_KEYS, where)
    source = spec.get("from")
    rules = spec.get("rules")
    if "value" in spec:
        # A constant: a user/get page lists followers only, so every openid on it has subscribe = 1.
        if source is not None or rules is not None:
            raise ConfigError(f"{where}: `value` (a constant) excludes `from` and `rules`")
        rules = [{"then": spec["value"]}]
    if (source is None) == (rules is None):
        raise ConfigError(f"{where}: give exactly one of `from` (export column), `rules` (derived value) "
                          "or `value` (a constant)")
    alternatives: tuple[str, ...] = ()
    if isinstance(source, list):
        names = _as_str_tuple(source, f"{where}.from")
        if not names:
            raise ConfigError(f"{where}.from: an empty list")
        source, alternatives = names[0], names[1:]

    unit = spec.get("unit", defaults["unit"]) if kind == "amount" else None
    if kind == "amount" and unit not in ("yuan", "fen"):
        raise ConfigError(f"{where}: amount needs `unit: yuan|fen` (or `amount_unit` on the layout)")
    if kind != "amount" and "unit" in spec:
        raise ConfigError(f"{where}: `unit` only applies to amount columns")

    formats: tuple[str, ...] = ()
    if kind in ("timestamp", "date"):
        formats = _as_str_tuple(spec.get("format"), f"{where}.format") or (
            defaults["time_format"] if kind == "timestamp" else defaults["date_format"]
        )
        for fmt in formats:
            if fmt not in EPOCH_FORMATS and "%" not in fmt:
                raise ConfigError(f"{where}.format: {fmt!r} is neither a strftime pattern nor unix_seconds/unix_millis")
    elif "format" in spec:
        raise ConfigError(f"{where}: `format` only applies to timestamp and date columns")
    timezone = spec.get("timezone", defaults["timezone"])
    _check_timezone(timezone, f"{where}.timezone")

    mapping = None
    if "map" in spec:
        if not isinstance(spec["map"], dict):
            raise ConfigError(f"{where}.map: expected a mapping of export value -> canonical value")
        mapping = tuple((str(k), None if v is None else str(v)) for k, v in spec["map"].items())
    unmapped = spec.get("unmapped", "quarantine")
    if unmapped not in UNMAPPED_POLICIES:
        raise ConfigError(f"{where}.unmapped: one of {list(UNMAPPED_POLICIES)}")

    parsed_rules = None
    if rules is not None:
        if not isinstance(rules, list) or not rules:
            raise ConfigError(f"{where}.rules: a non-empty list of {{when: {{...}}, then: value}}")
        parsed_rules = tuple(_parse_rule(r, f"{where}.rules[{i}]") for i, r in enumerate(rules))

    default = spec.get("default")
    return FieldSpec(
        name=name,
        kind=kind,
        source=None if source is None else str(source),
        required=bool(spec.get("required", False)),
        optional_column=bool(spec.get("optional", False)),
        default=None if default is None else str(default),
        unit=unit,
        formats=formats,
        timezone=timezone,
        mapping=mapping,
        unmapped=unmapped,
        rules=parsed_rules,
        alternatives=alternatives,
    )


def _parse_rule(spec: Any, where: str) -> Rule:
    if not isinstance(spec, dict) or "then" not in spec:
        raise ConfigError(f"{where}: expected {{when: {{...}}, then: value}}")
    _known_keys(spec, {"when", "then"}, where)
    when = spec.get("when") or {}
    if not isinstance(when, dict):
        raise ConfigError(f"{where}.when: expected a mapping")
    equals, has, lacks, refund = [], (), (), None
    for key, value in when.items():
        if key == "has":
            has = _as_str_tuple(value, f"{where}.when.has")
        elif key == "lacks":
            lacks = _as_str_tuple(value, f"{where}.when.lacks")
        elif key == "refund":
            if value not in REFUND_STATES:
                raise ConfigError(f"{where}.when.refund: one of {list(REFUND_STATES)}")
            refund = value
        else:
            values = value if isinstance(value, list) else [value]
            equals.append((str(key), tuple(None if v is None else str(v) for v in values)))
    then = spec["then"]
    then_field = None
    if isinstance(then, dict):
        if set(then) != {"field"}:
            raise ConfigError(f"{where}.then: a value, or {{field: <name>}} for another field's value")
        then_field, then = str(then["field"]), None
    return Rule(then=None if then is None else str(then), then_field=then_field, equals=tuple(equals), has=has,
                lacks=lacks, refund=refund)


def split_json_path(path: str) -> list[tuple[str, bool]]:
    """``follow_user[].userid`` -> ``[("follow_user", True), ("userid", False)]`` (True: list to explode)."""
    out = []
    for seg in path.split("."):
        is_list = seg.endswith("[]")
        key = seg[:-2] if is_list else seg
        if not key:
            raise ConfigError(f"empty segment in JSON path {path!r}")
        out.append((key, is_list))
    return out


def _check_json_paths(paths: list[str], where: str) -> None:
    lists: set[str] = set()
    kinds: dict[str, bool] = {}  # dotted key -> is it a list to explode
    leaves, parents = set(), set()
    for p in paths:
        try:
            segs = split_json_path(p)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        prefix = []
        for i, (key, is_list) in enumerate(segs):
            prefix.append(key)
            dotted = ".".join(prefix)
            if kinds.setdefault(dotted, is_list) != is_list:
                raise ConfigError(f"{where}: {dotted!r} is exploded (`[]`) in one path and not in another")
            if is_list:
                # `list[].key` explodes a list of objects; `data.openid[]` a list of plain values.
                lists.add(dotted)
            if i < len(segs) - 1:
                parents.add(dotted)
            else:
                leaves.add(dotted)
    if len(lists) > 1:
        raise ConfigError(f"{where}: only one list can be exploded per layout, got {sorted(lists)}")
    both = leaves & parents
    if both:
        raise ConfigError(f"{where}: {sorted(both)} used both as a value and as an object with keys")


SOURCES_KEYS = {"brand", "folders"}
FOLDER_KEYS = {"path", "layouts", "scope", "ignore", "description"}


def parse_sources(
    doc: Mapping, layouts: Mapping[str, Layout], where: str = "sources.yml"
) -> tuple[dict[str, LandingFolder], dict]:
    _known_keys(doc, SOURCES_KEYS, where)
    raw_folders = doc.get("folders")
    if not isinstance(raw_folders, dict) or not raw_folders:
        raise ConfigError(f"{where}: `folders` must map landing sub-folder names to their layouts")
    folders = {}
    for name, spec in raw_folders.items():
        fwhere = f"{where}: folders.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{fwhere}: expected a mapping")
        _known_keys(spec, FOLDER_KEYS, fwhere)
        names = _as_str_tuple(spec.get("layouts"), f"{fwhere}.layouts")
        if not names:
            raise ConfigError(f"{fwhere}.layouts: list the layouts that may appear in this folder")
        unknown = [n for n in names if n not in layouts]
        if unknown:
            raise ConfigError(f"{fwhere}.layouts: unknown layout(s) {unknown}; defined: {sorted(layouts)}")
        sources = {layouts[n].source for n in names}
        if len(sources) != 1:
            # One folder feeds one raw table so that one Dagster asset owns each folder outright.
            raise ConfigError(f"{fwhere}.layouts: all layouts of a folder must feed one raw table, got {sorted(sources)}")
        source = sources.pop()
        scope = spec.get("scope") or {}
        if not isinstance(scope, dict):
            raise ConfigError(f"{fwhere}.scope: expected a mapping of canonical column -> value")
        columns = dict(CANONICAL_COLUMNS[source])
        for key, value in scope.items():
            if key not in columns:
                raise ConfigError(f"{fwhere}.scope: raw.{source} has no column {key!r}")
            if columns[key] != "VARCHAR":
                raise ConfigError(f"{fwhere}.scope.{key}: only text columns can be set from scope")
            if value is None or str(value) == "":
                raise ConfigError(f"{fwhere}.scope.{key}: empty value")
        for n in names:
            lay = layouts[n]
            for ref in _TEMPLATE_REF.findall(lay.record_id):
                if lay.field(ref) is None and ref not in scope:
                    raise ConfigError(f"{fwhere}: layout {n} builds record_id from {{{ref}}}, which neither the "
                                      f"layout's fields nor this folder's scope provide")
        path = str(spec.get("path") or name)
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise ConfigError(f"{fwhere}.path: must be relative to the landing folder")
        ignore = _as_str_tuple(spec.get("ignore"), f"{fwhere}.ignore") if "ignore" in spec else DEFAULT_IGNORE
        folders[name] = LandingFolder(
            name=name,
            path=path,
            source=source,
            layouts=names,
            scope=tuple((k, str(v)) for k, v in scope.items()),
            ignore=ignore,
        )
    paths = [f.path for f in folders.values()]
    if len(set(paths)) != len(paths):
        raise ConfigError(f"{where}: two folders share a path")
    brand = doc.get("brand") or {}
    if not isinstance(brand, dict):
        raise ConfigError(f"{where}: brand: expected a mapping")
    return folders, dict(brand)
