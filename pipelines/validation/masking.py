"""Masking of example values before they leave the warehouse (check metadata, logs, the UI).

PIPL: phone numbers stay with the people who need them. An example of a failed rule is shown as
``139****5678`` whatever the column, whatever the form the number was exported in (``+86 139 1234 5678``,
``139-1234-5678``, inside a record_id, ...).
"""

from __future__ import annotations

import re
from typing import Any

# An 11-digit mainland mobile in any export form, not part of a longer digit run.
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?!\d)")
# In a phone column every digit run of 7+ digits is someone's number, mobile or not.
_LONG_DIGITS = re.compile(r"\d{7,}")
PHONE_COLUMN_HINTS = ("phone", "mobile")
MAX_EXAMPLE_CHARS = 80


def mask_phones(text: str) -> str:
    """``text`` with every mobile number reduced to its first 3 and last 4 digits."""
    return _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)


def _mask_digit_run(match: re.Match) -> str:
    digits = match.group(0)
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 11 else "*" * len(digits)


def mask_value(value: Any, column: str | None = None) -> str:
    """An example value as safe text: phones masked, long values cut."""
    if isinstance(value, (list, tuple)):
        text = "(" + ", ".join(mask_value(v, column) for v in value) + ")"
    else:
        text = mask_phones(str(value))
        if column and any(hint in column for hint in PHONE_COLUMN_HINTS):
            text = _LONG_DIGITS.sub(_mask_digit_run, text)
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[: MAX_EXAMPLE_CHARS - 1] + "…"
