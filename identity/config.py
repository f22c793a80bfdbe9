"""Resolution rules: the defaults live here, `config/identity.yml` repeats them with comments for people.

A test keeps the two equal, so reading the YAML file and calling `load_config()` with no path give the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

# Types whose scope is meaningless: the value alone names the identity, whatever scope a source wrote.
GLOBAL_TYPES = ("unionid", "phone", "email", "phone_md5", "phone_sha256")
# Types that are only an identity together with their scope (appid, corp id, CRM name, platform).
SCOPED_TYPES = ("openid", "external_userid", "member_id", "buyer_account")
KNOWN_TYPES = GLOBAL_TYPES + SCOPED_TYPES
STRENGTHS = ("strong", "weak")

DEFAULT_ID_TYPE_PRIORITY = (
    "unionid",
    "external_userid",
    "openid",
    "member_id",
    "phone",
    "email",
    "phone_sha256",
    "phone_md5",
    "buyer_account",
)
DEFAULT_UNIQUE_TYPES = ("unionid", "external_userid", "member_id")


class ConfigError(ValueError):
    """The identity config is malformed; the message names the key."""


@dataclass(frozen=True)
class BlockRule:
    """Values (compared after normalization) and whole-value regexes (Rust `regex` syntax) that link nothing."""

    values: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class IdentityConfig:
    shared_threshold: int = 3
    unique_types: tuple[str, ...] = DEFAULT_UNIQUE_TYPES
    id_type_priority: tuple[str, ...] = DEFAULT_ID_TYPE_PRIORITY
    source_priority: tuple[str, ...] = ()
    link_strength: Mapping[str, str] = field(default_factory=dict)
    blocklist: Mapping[str, BlockRule] = field(default_factory=dict)
    # graph health: a run whose largest user holds more records than this fails its check and is not published
    max_user_size: int | None = 10_000
    # the pipeline runs a batch incrementally only while the users it touches hold at most this share of the
    # records; above it a full run, slower but in less memory (None: always incremental)
    incremental_max_share: float | None = 0.3

    def strength_for(self, source: str, id_type: str) -> str:
        return self.link_strength.get(f"{source}.{id_type}", self.link_strength.get(id_type, "strong"))


_KEYS = {
    "shared_threshold",
    "unique_types",
    "id_type_priority",
    "source_priority",
    "link_strength",
    "blocklist",
    "max_user_size",
    "incremental_max_share",
}


def _string_list(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{key} must be a list of strings, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key} lists a value twice: {value!r}")
    return tuple(value)


def config_from_dict(document: Mapping[str, Any] | None) -> IdentityConfig:
    """Validate a parsed document; keys left out keep their defaults, unknown keys are errors (typos matter)."""
    document = dict(document or {})
    unknown = set(document) - _KEYS
    if unknown:
        raise ConfigError(f"unknown identity config keys: {sorted(unknown)}; known: {sorted(_KEYS)}")
    defaults = IdentityConfig()
    kwargs: dict[str, Any] = {}

    if document.get("shared_threshold") is not None:
        threshold = document["shared_threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigError(f"shared_threshold must be a positive integer, got {threshold!r}")
        kwargs["shared_threshold"] = threshold

    if "max_user_size" in document:
        limit = document["max_user_size"]
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"max_user_size must be a positive integer or null, got {limit!r}")
        kwargs["max_user_size"] = limit

    if "incremental_max_share" in document:
        share = document["incremental_max_share"]
        if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1):
            raise ConfigError(f"incremental_max_share must be a number in (0, 1] or null, got {share!r}")
        kwargs["incremental_max_share"] = None if share is None else float(share)

    for key in ("unique_types", "id_type_priority", "source_priority"):
        if key in document and document[key] is not None:
            kwargs[key] = _string_list(document[key], key)

    for id_type in kwargs.get("unique_types", defaults.unique_types):
        if id_type in ("phone", "email", "phone_md5", "phone_sha256"):
            # a person may have two phones; making phones unique would split people, not merge fewer
            raise ConfigError(f"unique_types: {id_type} cannot be unique per person")

    strengths = document.get("link_strength") or {}
    if not isinstance(strengths, Mapping):
        raise ConfigError(f"link_strength must be a mapping, got {strengths!r}")
    for key, value in strengths.items():
        if value not in STRENGTHS:
            raise ConfigError(f"link_strength.{key} must be strong or weak, got {value!r}")
    kwargs["link_strength"] = {str(key): value for key, value in strengths.items()}

    blocklist = document.get("blocklist") or {}
    if not isinstance(blocklist, Mapping):
        raise ConfigError(f"blocklist must be a mapping of id_type to values/patterns, got {blocklist!r}")
    rules = {}
    for id_type, rule in blocklist.items():
        rule = rule or {}
        if not isinstance(rule, Mapping) or set(rule) - {"values", "patterns"}:
            raise ConfigError(f"blocklist.{id_type} must be a mapping with `values` and/or `patterns`")
        values = tuple(str(item) for item in (rule.get("values") or []))
        patterns = _string_list(rule.get("patterns"), f"blocklist.{id_type}.patterns")
        for pattern in patterns:
            _check_pattern(pattern, f"blocklist.{id_type}.patterns")
        rules[str(id_type)] = BlockRule(values=values, patterns=patterns)
    kwargs["blocklist"] = rules
    return IdentityConfig(**kwargs)


def _check_pattern(pattern: str, key: str) -> None:
    import polars as pl

    try:
        pl.Series([""]).str.contains(pattern)
    except Exception as error:  # polars reports regex errors with several exception types across versions
        raise ConfigError(f"{key}: invalid regex {pattern!r}: {error}") from None


def load_config(path: str | Path | None = None) -> IdentityConfig:
    """The rules in `path` (YAML) over the defaults; no path gives the defaults."""
    if path is None:
        return IdentityConfig()
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    if document is not None and not isinstance(document, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return config_from_dict(document)
