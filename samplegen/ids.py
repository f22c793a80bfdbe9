"""Identifier and value builders, vectorized over numpy arrays."""

from __future__ import annotations

import numpy as np

from .vocab import PHONE_PREFIXES

# WeChat openids/unionids and WeCom external_userids use the base64-url alphabet, case-sensitive.
_ALPHABET = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8)
_HEX = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_PREFIXES = np.array(PHONE_PREFIXES, dtype=np.int64)

CHINA_OFFSET = 8 * 3600  # Asia/Shanghai has no DST: local wall clock = UTC + 8h all year


def random_tokens(rng: np.random.Generator, n: int, length: int, prefix: str = "",
                  alphabet: np.ndarray = _ALPHABET) -> list[str]:
    if n == 0:
        return []
    codes = alphabet[rng.integers(0, len(alphabet), size=(n, length))]
    raw = np.ascontiguousarray(codes).view(f"S{length}").ravel()
    return [prefix + b.decode("ascii") for b in raw.tolist()]


def random_hex(rng: np.random.Generator, n: int, length: int, prefix: str = "") -> list[str]:
    return random_tokens(rng, n, length, prefix, _HEX)


def feistel8(x: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """A keyed bijection of [0, 10**8): sequential indexes become scattered but never-colliding numbers."""
    hi = x // 10_000
    lo = x % 10_000
    for k in keys.tolist():
        hi, lo = lo, (hi + ((lo * 2_654_435_761 + k) >> 7) % 10_000) % 10_000
    return hi * 10_000 + lo


def phones_from_index(k: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Distinct phone indexes give distinct valid mobiles (up to 3.4e9 indexes), so no accidental sharing.

    Index k = j * 10**8 + m becomes prefix PREFIXES[(j + m) % P] and suffix feistel8(m): the suffix gives back m,
    the prefix then gives back j, so the map is one-to-one while neighbouring indexes look unrelated.
    """
    k = np.asarray(k, dtype=np.int64)
    j, m = k // 100_000_000, k % 100_000_000
    prefix = _PREFIXES[(j + m) % len(_PREFIXES)]
    return prefix * 100_000_000 + feistel8(m, keys)


def phone_strings(phones: np.ndarray) -> np.ndarray:
    return phones.astype("U11")


def format_local(t: np.ndarray) -> list[str]:
    """Local-seconds integers to `YYYY-MM-DD HH:MM:SS`."""
    if len(t) == 0:
        return []
    s = np.datetime_as_string(np.asarray(t, dtype=np.int64).astype("datetime64[s]"), unit="s")
    return np.strings.replace(s, "T", " ").tolist()


def format_days(d: np.ndarray) -> list[str]:
    if len(d) == 0:
        return []
    return np.datetime_as_string(np.asarray(d, dtype=np.int64).astype("datetime64[D]"), unit="D").tolist()


def fen_to_yuan(fen: np.ndarray) -> list[str]:
    fen = np.asarray(fen, dtype=np.int64)
    return [f"{v // 100}.{v % 100:02d}" for v in fen.tolist()]
