"""Keyed hashes, masking and spreadsheet-safe CSV cells (identity/privacy.py, pipelines/admin.write_csv)."""

from __future__ import annotations

import csv
import hashlib
import hmac

import polars as pl
import pytest

from identity.privacy import (
    DEMO_KEY,
    DEMO_KEY_ENV,
    KEY_ENV,
    MissingKeyError,
    ad_platform_hash,
    hash_engine,
    hmac_key,
    identity_hmac,
    identity_hmac_series,
    identity_key_text,
    keyed_hash_series,
    keyed_hashes,
    mask_phone,
    spreadsheet_safe,
)
from pipelines.admin import write_csv


@pytest.mark.parametrize("cell", ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "=HYPERLINK(\"x\")"])
def test_formula_cells_are_neutralized(cell):
    assert spreadsheet_safe(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["abc", "13912345678", "", "'already", "a=b", "中文=1", 5, -5, None, 1.5])
def test_other_cells_pass_unchanged(cell):
    assert spreadsheet_safe(cell) == cell


def test_written_csv_reads_back_as_text(tmp_path):
    path = tmp_path / "out.csv"
    rows = [["=1+1", "ok"], ["@x", "-3"], ["plain", 7]]
    assert write_csv(path, ["=h", "b"], rows) == 3
    with open(path, newline="", encoding="utf-8") as handle:
        back = list(csv.reader(handle))
    assert back == [["'=h", "b"], ["'=1+1", "ok"], ["'@x", "'-3"], ["plain", "7"]]


def test_key_is_required_unless_the_demo_key_is_asked_for():
    with pytest.raises(MissingKeyError, match=KEY_ENV) as error:
        hmac_key({})
    assert DEMO_KEY_ENV in str(error.value)  # the message says how to run the demo, too
    with pytest.raises(MissingKeyError, match="shorter"):
        hmac_key({KEY_ENV: "short"})
    assert hmac_key({DEMO_KEY_ENV: "1"}) == (DEMO_KEY.encode(), True)
    secret = "0123456789abcdef0123456789abcdef"
    assert hmac_key({KEY_ENV: secret, DEMO_KEY_ENV: "1"}) == (secret.encode(), False)


def test_identity_hmac_is_keyed_and_scoped():
    key = b"k" * 32
    expected = hmac.new(key, b"phone\t\t13912345678", hashlib.sha256).hexdigest()
    assert identity_hmac(key, "phone", "", "13912345678") == expected
    assert identity_hmac(b"j" * 32, "phone", "", "13912345678") != expected
    assert identity_hmac(key, "openid", "wxA", "o1") != identity_hmac(key, "openid", "wxB", "o1")
    assert expected != hashlib.sha256(b"13912345678").hexdigest()


def test_bulk_hashes_equal_one_at_a_time():
    from identity.resolution import user_id_for, user_ids_for

    key = b"k" * 32
    texts = ["phone\t\t13912345678", "openid\twxapp\toAbC", "", "中文"]
    assert keyed_hashes(key, texts) == [hmac.new(key, t.encode(), hashlib.sha256).hexdigest() for t in texts]
    assert keyed_hashes(None, texts) == [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    assert keyed_hashes(key, [identity_key_text("phone", None, "139")]) == [identity_hmac(key, "phone", "", "139")]
    for k in (key, None):
        assert user_ids_for(texts, k).to_list() == [user_id_for(t, k) for t in texts]
    identities = pl.DataFrame(
        [("phone", "", "13912345678"), ("openid", "wxapp", "oAbC"), ("email", None, "中文@x.cn")],
        schema=["id_type", "scope", "id_value"], orient="row",
    )
    expected = [identity_hmac(key, *row) for row in identities.iter_rows()]
    assert identity_hmac_series(key, identities).to_list() == expected


@pytest.mark.parametrize("engine", ["duckdb", "python"])
@pytest.mark.parametrize("key", [None, b"k" * 32, b"short", b"b" * 64, b"L" * 65, DEMO_KEY.encode()])
def test_keyed_hash_series_is_hmac_sha256(engine, key):
    # DuckDB spells HMAC out from two sha256 calls: every key length around the 64-byte block, nulls, non-ASCII
    texts = pl.Series(["phone\t\t13912345678", None, "", "中文 ünï", "x" * 200])
    expected = [
        None if t is None else hmac.new(key, t.encode(), hashlib.sha256).hexdigest() if key else
        hashlib.sha256(t.encode()).hexdigest()
        for t in texts
    ]
    assert keyed_hash_series(key, texts, engine).to_list() == expected


def test_hash_engine_names():
    assert hash_engine("python") == "python" and hash_engine("auto") == "duckdb"
    with pytest.raises(ValueError, match="duckdb or python"):
        hash_engine("spark")


def test_masking_and_ad_platform_hashes():
    assert mask_phone("13912345678") == "139****5678"
    assert mask_phone("12345") == "*****" and mask_phone(None) is None
    assert ad_platform_hash("13912345678", "md5") == hashlib.md5(b"13912345678").hexdigest()
    assert ad_platform_hash("13912345678", "sha256") == hashlib.sha256(b"13912345678").hexdigest()
    with pytest.raises(ValueError):
        ad_platform_hash("13912345678", "sha1")
