"""OneID identity resolution: one user id per person across WeChat, WeCom, shop and CRM identifiers.

A plain library (no orchestration or warehouse code): give it observations, get back the identity tables.
"""

from identity.config import BlockRule, ConfigError, IdentityConfig, load_config
from identity.evaluate import pairwise_scores
from identity.normalize import ObservationError, normalize_observations
from identity.resolution import LinkParts, LinkTable, Resolution, resolve

__all__ = [
    "BlockRule",
    "ConfigError",
    "IdentityConfig",
    "LinkParts",
    "LinkTable",
    "ObservationError",
    "Resolution",
    "load_config",
    "normalize_observations",
    "pairwise_scores",
    "resolve",
]
