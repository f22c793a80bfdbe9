from pathlib import Path

import pytest

from identity import ConfigError, IdentityConfig, load_config
from identity.config import config_from_dict

REPO = Path(__file__).resolve().parents[2]


def test_shipped_yaml_equals_the_defaults_in_code():
    assert load_config(REPO / "config" / "identity.yml") == load_config() == IdentityConfig()


def test_every_top_level_key_in_the_yaml_is_commented():
    lines = (REPO / "config" / "identity.yml").read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line and not line[0].isspace() and not line.startswith("#"):
            assert lines[index - 1].startswith("#"), f"key without a comment above it: {line}"


def test_partial_config_keeps_defaults(tmp_path):
    path = tmp_path / "identity.yml"
    path.write_text("shared_threshold: 5\nsource_priority: [crm_members]\n", encoding="utf-8")
    config = load_config(path)
    assert config.shared_threshold == 5
    assert config.source_priority == ("crm_members",)
    assert config.unique_types == IdentityConfig().unique_types


@pytest.mark.parametrize(
    "document",
    [
        {"shared_treshold": 3},
        {"shared_threshold": 0},
        {"unique_types": ["phone"]},
        {"link_strength": {"phone": "medium"}},
        {"blocklist": {"phone": {"value": ["1"]}}},
        {"blocklist": {"phone": {"patterns": ["("]}}},
        {"id_type_priority": ["phone", "phone"]},
        {"incremental_max_share": 0},
        {"incremental_max_share": 1.5},
        {"incremental_max_share": "half"},
        {"incremental_max_share": True},
    ],
)
def test_bad_configs_are_refused(document):
    with pytest.raises(ConfigError):
        config_from_dict(document)


def test_strength_lookup_prefers_source_and_type():
    config = config_from_dict({"link_strength": {"orders.phone": "weak", "phone": "strong", "email": "weak"}})
    assert config.strength_for("orders", "phone") == "weak"
    assert config.strength_for("crm", "phone") == "strong"
    assert config.strength_for("crm", "email") == "weak"
    assert config.strength_for("crm", "openid") == "strong"


def test_settings_that_do_not_shape_the_result_leave_the_rules_fingerprint_alone():
    from identity.state import config_hash

    shipped = IdentityConfig()
    assert config_from_dict({"incremental_max_share": None}).incremental_max_share is None
    assert config_from_dict({"incremental_max_share": 1}).incremental_max_share == 1.0
    same = {config_hash(config_from_dict(d)) for d in ({"incremental_max_share": 0.5}, {"max_user_size": 3}, {})}
    assert same == {config_hash(shipped)}
    assert config_hash(config_from_dict({"shared_threshold": 4})) != config_hash(shipped)
