"""A deterministic generator of a simulated private-domain brand, with the ground truth of who is who.

    from samplegen import generate, NoiseRates
    generate("data/sample", users=2000, seed=20251123)

See docs/sample-data.md. Everything it writes is fake.
"""

from .simulate import (CHUNK_SIZE, DEFAULT_ACTIVITY, DEFAULT_END, DEFAULT_REFERRAL_RATE, DEFAULT_START, PERSON_HEADER,
                       generate)
from .noise import NoiseRates
from .vocab import CHANNELS, CRM_NAME, MP_APPID, OA_APPID, WECOM_CORP_ID, Channel

__all__ = [
    "generate", "NoiseRates", "CHANNELS", "Channel", "CHUNK_SIZE", "DEFAULT_START", "DEFAULT_END",
    "DEFAULT_REFERRAL_RATE", "DEFAULT_ACTIVITY", "PERSON_HEADER", "OA_APPID", "MP_APPID", "WECOM_CORP_ID", "CRM_NAME",
]
