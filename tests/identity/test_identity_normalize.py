import hashlib

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from identity import load_config, normalize_observations
from identity.config import config_from_dict
from identity.normalize import BAD_STRENGTH, BAD_TIME, INPUT_COLUMNS, ObservationError

VALID = "13912345678"


def normalize_one(id_type, value, scope="", config=None, **extra):
    frame = pl.DataFrame(
        {
            "source": ["s"],
            "record_id": ["r"],
            "id_type": [id_type],
            "scope": [scope],
            "id_value": [value],
            "observed_at": ["2024-05-01 12:00:00"],
            **{key: [item] for key, item in extra.items()},
        },
        schema_overrides={"id_value": pl.String, "scope": pl.String},
    )
    return normalize_observations(frame, config or load_config()).row(0, named=True)


@pytest.mark.parametrize(
    ("raw", "expected", "reason"),
    [
        ("13912345678", VALID, None),
        ("+8613912345678", VALID, None),
        ("+86 139 1234 5678", VALID, None),
        ("86-139-1234-5678", VALID, None),
        ("8613912345678", VALID, None),
        ("0086 13912345678", VALID, None),
        ("139-1234-5678", VALID, None),
        ("139.1234.5678", VALID, None),
        ("13912345678.0", VALID, None),  # a spreadsheet's float
        ("+86 13912345678.00", VALID, None),
        ("1.39123E+10", None, "invalid_phone"),  # scientific notation: digits lost
        ("13912345678.5", None, "invalid_phone"),
        ("(+86) 139 1234 5678", VALID, None),
        ("  13912345678\t", VALID, None),
        ("１３９１２３４５６７８", VALID, None),  # full-width digits
        ("＋８６　１３９１２３４５６７８", VALID, None),  # full-width plus and ideographic space
        ("\u200b13912345678", VALID, None),  # a zero-width space from a chat copy
        ("\ufeff139\u200d1234\u200c5678\u2060", VALID, None),  # byte-order mark, joiners, word joiner
        ("139\u00a01234\u00a05678", VALID, None),  # no-break spaces
        ("139\u20141234\u20135678", VALID, None),  # em and en dashes from a word processor
        ("139\u22121234\u20105678", VALID, None),  # a minus sign and a hyphen that are not ASCII
        ("\u200b", None, "empty"),  # only an invisible character: trimmed like whitespace
        ("13912345678(本人)", VALID, None),  # annotated by hand in a CRM sheet
        ("手机：139-1234-5678", VALID, None),
        ("微信同号 13912345678", VALID, None),
        ("tel:+86-139-1234-5678", VALID, None),
        ("Tel. 139 1234 5678", VALID, None),
        ("13912345678x", None, "invalid_phone"),  # a Latin letter: a typo, not an annotation
        ("13912345678/13812345678", None, "invalid_phone"),  # two phones in one cell: neither is chosen
        ("13800138000(测试)", "13800138000", "junk"),
        ("无", None, "junk"),  # the placeholders of hand-kept Chinese sheets
        ("暂无", None, "junk"),
        ("未知", None, "junk"),
        ("19912345678", "19912345678", None),
        ("138****1234", None, "masked"),
        ("1******6198", None, "masked"),
        ("##a9Xz3Lq==", None, "ciphertext"),
        ("$$Zm9vYmFy$$", None, "ciphertext"),
        ("13800138000", "13800138000", "junk"),
        ("138-0013-8000", "13800138000", "junk"),
        ("00000000000", "00000000000", "junk"),
        ("11111111111", "11111111111", "junk"),
        ("12345678901", "12345678901", "junk"),
        ("01234567890", "01234567890", "junk"),
        ("null", None, "junk"),
        ("NULL", None, "junk"),
        ("undefined", None, "junk"),
        ("-", None, "junk"),
        ("0", None, "junk"),
        ("", None, "empty"),
        ("   ", None, "empty"),
        (None, None, "empty"),
        ("1391234567", None, "invalid_phone"),  # 10 digits
        ("139123456789", None, "invalid_phone"),  # 12 digits
        ("12912345678", None, "invalid_phone"),  # second digit not 3-9
        ("4008001234", None, "invalid_phone"),  # a service line, not a mobile
        ("+85291234567", None, "invalid_phone"),  # Hong Kong
        ("0571-88886666", None, "invalid_phone"),  # landline
        ("1391234567x", None, "invalid_phone"),
    ],
)
def test_phone_normalization(raw, expected, reason):
    row = normalize_one("phone", raw)
    assert row["unusable_reason"] == reason
    assert row["usable"] is (reason is None)
    if reason in (None, "junk") and expected is not None:
        assert row["id_value"] == expected
    if reason not in (None, "junk"):
        assert row["id_value"] is None
    assert row["raw_value"] == raw


@pytest.mark.parametrize(
    ("raw", "expected", "reason"),
    [
        ("  Foo.Bar@Example.COM ", "foo.bar@example.com", None),
        ("ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｎ", "alice@example.cn", None),
        ("\u200bAlice@Example.cn\ufeff", "alice@example.cn", None),
        ("ali\u200dce@example.cn", "alice@example.cn", None),
        ("mailto:Alice@Example.cn", "alice@example.cn", None),
        ("MAILTO:alice@example.cn", "alice@example.cn", None),
        ("mailto:", None, "invalid_email"),
        ("alice@example.cn.", "alice@example.cn", None),  # the full stop of the sentence it was typed in
        ("alice@example.cn\u3000", "alice@example.cn", None),
        ("not-an-email", None, "invalid_email"),
        ("a@b", None, "invalid_email"),
        ("undefined", None, "junk"),
        ("", None, "empty"),
    ],
)
def test_email_normalization(raw, expected, reason):
    row = normalize_one("email", raw)
    assert (row["unusable_reason"], row["usable"]) == (reason, reason is None)
    if reason is None:
        assert row["id_value"] == expected


def test_opaque_ids_are_trimmed_and_keep_case():
    assert normalize_one("openid", "  oAbC_dEf-123\t", scope="wxapp")["id_value"] == "oAbC_dEf-123"
    assert normalize_one("unionid", " oU9zXy ")["id_value"] == "oU9zXy"
    assert normalize_one("member_id", "\t000123", scope="crm")["id_value"] == "000123"
    assert normalize_one("external_userid", "wmAbC", scope="corp")["id_value"] == "wmAbC"
    assert normalize_one("buyer_account", "tb_Nick ", scope="taobao")["id_value"] == "tb_Nick"
    # copied from a chat or a web page: zero-width space, byte-order mark, ideographic and no-break spaces
    assert normalize_one("openid", "\u200boAbC\ufeff", scope="wxapp")["id_value"] == "oAbC"
    assert normalize_one("unionid", "\u3000oU9zXy\u00a0")["id_value"] == "oU9zXy"
    assert normalize_one("member_id", "\u2060M\u200b1\u200d", scope="crm")["id_value"] == "M\u200b1"  # inside: kept
    row = normalize_one("unionid", "\ufeff\u200b")
    assert (row["id_value"], row["unusable_reason"]) == (None, "empty")


def test_scope_rules():
    # global types ignore whatever scope a source wrote; scoped types without scope are not identities
    assert normalize_one("unionid", "oU1", scope="wxapp")["scope"] == ""
    assert normalize_one("phone", VALID, scope="x")["scope"] == ""
    row = normalize_one("openid", "oA1", scope="  wxapp ")
    assert (row["scope"], row["usable"]) == ("wxapp", True)
    row = normalize_one("openid", "oA1", scope=None)
    assert (row["usable"], row["unusable_reason"]) == (False, "missing_scope")
    assert normalize_one("member_id", "M1", scope="")["unusable_reason"] == "missing_scope"


def test_hashed_phones():
    md5 = hashlib.md5(VALID.encode()).hexdigest()
    sha = hashlib.sha256(VALID.encode()).hexdigest()
    assert normalize_one("phone_md5", " " + md5.upper() + " ")["id_value"] == md5
    assert normalize_one("phone_sha256", sha.upper())["id_value"] == sha
    assert normalize_one("phone_md5", sha)["unusable_reason"] == "invalid_hash"  # wrong length
    assert normalize_one("phone_sha256", md5)["unusable_reason"] == "invalid_hash"
    assert normalize_one("phone_md5", "z" * 32)["unusable_reason"] == "invalid_hash"
    # hashes of junk numbers and of the empty string are junk like the numbers themselves
    assert normalize_one("phone_md5", hashlib.md5(b"13800138000").hexdigest())["unusable_reason"] == "junk"
    assert normalize_one("phone_md5", hashlib.md5(b"").hexdigest())["unusable_reason"] == "junk"
    assert normalize_one("phone_sha256", hashlib.sha256(b"").hexdigest())["unusable_reason"] == "junk"


def test_config_blocklist_values_and_patterns():
    config = config_from_dict(
        {
            "blocklist": {
                "phone": {"values": ["+86 139-1111-2222"], "patterns": [r"1700000\d{4}"]},
                "openid": {"values": ["oTEST"]},
            }
        }
    )
    assert normalize_one("phone", "13911112222", config=config)["unusable_reason"] == "blocklist"
    assert normalize_one("phone", "17000001234", config=config)["unusable_reason"] == "blocklist_pattern"
    # patterns are anchored to the whole value
    assert normalize_one("phone", "13917000001", config=config)["usable"] is True
    assert normalize_one("openid", "oTEST", scope="app", config=config)["unusable_reason"] == "blocklist"
    assert normalize_one("openid", "otest", scope="app", config=config)["usable"] is True
    # a blocked phone's hashes are blocked as well
    md5 = hashlib.md5(b"13911112222").hexdigest()
    assert normalize_one("phone_md5", md5, config=config)["unusable_reason"] == "blocklist"


def test_strength_from_column_then_config_then_strong():
    config = config_from_dict({"link_strength": {"orders.phone": "weak", "email": "weak"}})
    frame = pl.DataFrame(
        {
            "source": ["orders", "orders", "crm", "crm", "crm"],
            "record_id": ["1", "1", "2", "2", "2"],
            "id_type": ["phone", "openid", "phone", "email", "email"],
            "scope": ["", "app", "", "", ""],
            "id_value": [VALID, "o1", VALID, "a@b.cn", "a@b.cn"],
            "observed_at": [None] * 5,
            "strength": [None, None, None, None, "Strong"],
        },
        schema_overrides={"observed_at": pl.Datetime("us")},
    )
    out = normalize_observations(frame, config)
    assert out["strength"].to_list() == ["weak", "strong", "strong", "weak", "strong"]
    with pytest.raises(ValueError, match="strength"):
        normalize_observations(frame.with_columns(strength=pl.lit("medium")), config)


def test_observed_at_accepts_strings_dates_and_aware_datetimes():
    base = {"source": ["s"], "record_id": ["r"], "id_type": ["phone"], "scope": [""], "id_value": [VALID]}
    aware = pl.DataFrame(base).with_columns(
        observed_at=pl.datetime(2024, 1, 1, 0, 0, 0, time_zone="UTC")
    )
    out = normalize_observations(aware)
    assert out["observed_at"].dtype == pl.Datetime("us")
    assert str(out["observed_at"][0]) == "2024-01-01 08:00:00"  # China time, naive
    no_time = normalize_observations(pl.DataFrame(base))
    assert no_time["observed_at"][0] is None
    text = normalize_observations(
        pl.DataFrame({**base, "id_value": [VALID] * 3, "source": ["s"] * 3, "record_id": ["1", "2", "3"],
                      "id_type": ["phone"] * 3, "scope": [""] * 3,
                      "observed_at": ["2024-01-02 03:04:05", "2024-01-02", None]})
    )
    assert [str(value) for value in text["observed_at"]] == ["2024-01-02 03:04:05", "2024-01-02 00:00:00", "None"]
    # ISO with an offset or Z (APIs, JavaScript's toISOString), alone or beside naive times: China time
    offsets = ["2024-05-01T04:00:00Z", "2024-05-01T12:00:00+08:00", "2024-05-01 04:00:00.000z", "2024-05-01 12:00:00"]
    for times in (offsets, offsets[:1] * 3, offsets[1:2] * 3):
        rows = {key: value * len(times) for key, value in base.items()}
        out = normalize_observations(pl.DataFrame({**rows, "observed_at": times}))
        assert out["observed_at"].dtype == pl.Datetime("us")
        assert {str(value) for value in out["observed_at"]} == {"2024-05-01 12:00:00"}
    rows = {key: value * 2 for key, value in base.items()}
    mixed = normalize_observations(pl.DataFrame({**rows, "observed_at": ["2024-05-01T04:00:00Z", "2024-05-02"]}))
    assert [str(value) for value in mixed["observed_at"]] == ["2024-05-01 12:00:00", "2024-05-02 00:00:00"]
    with pytest.raises(ObservationError, match="row 1, column observed_at: '02/01/2024 noon' is not an ISO time"):
        normalize_observations(pl.DataFrame({**base, "observed_at": ["02/01/2024 noon"]}))
    with pytest.raises(ObservationError, match="column observed_at: must hold datetimes, dates or ISO times"):
        normalize_observations(pl.DataFrame({**base, "observed_at": [20240101]}))


def test_output_keeps_input_order_and_contract_columns():
    frame = pl.DataFrame(
        {
            "source": ["b", "a", "c"],
            "record_id": ["2", "1", "3"],
            "id_type": ["phone", "EMAIL", "openid"],
            "scope": ["", "", "app"],
            "id_value": [VALID, "X@Y.COM", "o1"],
            "observed_at": [None, None, None],
            "extra": [1, 2, 3],
        }
    )
    out = normalize_observations(frame)
    assert out.columns == [
        "source", "record_id", "id_type", "scope", "id_value", "raw_value",
        "observed_at", "strength", "usable", "unusable_reason",
    ]
    assert out["record_id"].to_list() == ["2", "1", "3"]
    assert out["id_type"].to_list() == ["phone", "email", "openid"]


def _messy_frame(rng, rows: int) -> pl.DataFrame:
    """Contract rows with faults strewn in: empty keys, times that are not ISO, strengths of other words."""
    def pick(good, bad, share=0.1):
        return rng.choice(bad) if rng.random() < share else good

    return pl.DataFrame(
        {
            "source": [pick("crm", [None, ""]) for _ in range(rows)],
            "record_id": [pick(str(rng.randrange(rows)), [None, ""]) for _ in range(rows)],
            "id_type": [pick(rng.choice(["phone", "Email", "openid"]), [None]) for _ in range(rows)],
            "scope": [rng.choice(["", "app", None]) for _ in range(rows)],
            "id_value": [rng.choice([VALID, "a@b.com", "o1", None, "13800138000"]) for _ in range(rows)],
            "observed_at": [
                pick(rng.choice(["2024-01-02", "2024-01-02 03:04:05", "2024-05-01T04:00:00Z", None, " "]),
                     ["yesterday", "02/01/2024", "2024-13-45"])
                for _ in range(rows)
            ],
            "strength": [
                pick(rng.choice(["strong", " Weak", None, ""]), ["sometimes", "STRONGEST"]) for _ in range(rows)
            ],
        },
        schema_overrides={"source": pl.String, "record_id": pl.String, "id_type": pl.String},
    )


@pytest.mark.parametrize("seed", range(40))
def test_contract_violations_are_the_rows_normalize_refuses(seed):
    import random

    from identity.normalize import contract_violations, split_observations

    rng = random.Random(seed)
    obs = _messy_frame(rng, rng.choice([1, 3, 20, 200]))
    violations = contract_violations(obs)
    try:
        normalize_observations(obs)
    except ObservationError as error:
        # normalize checks a column at a time, and names the first row at fault in the first column with any
        order = ["source", "record_id", "id_type", "observed_at", "strength"]
        first_column = min(violations["column"], key=order.index)
        assert error.column == first_column
        assert error.row == violations.filter(pl.col("column") == first_column)["row"][0]
    else:
        assert violations.is_empty()
    assert violations["row"].is_unique().all() and violations["row"].is_sorted()
    kept, quarantined = split_observations(obs)
    normalize_observations(kept)  # does not raise
    assert contract_violations(kept).is_empty()
    assert kept.height + quarantined.height == obs.height
    assert quarantined.columns == ["row", "column", "reason", *obs.columns]
    # every row is in exactly one of the two, as it was (the set-aside ones as text)
    text = obs.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64), pl.all().exclude("row").cast(pl.String))
    assert_frame_equal(quarantined.drop("column", "reason"), text.filter(pl.col("row").is_in(violations["row"])))
    assert_frame_equal(kept, obs.filter(~pl.int_range(pl.len()).is_in(violations["row"])))
    reasons = {"source": "empty", "record_id": "empty", "id_type": "empty", "observed_at": BAD_TIME,
               "strength": BAD_STRENGTH}
    for row, column, reason in quarantined.select("row", "column", "reason").iter_rows():
        assert reason == reasons[column]
        # the row alone is refused for that column
        with pytest.raises(ObservationError) as refused:
            normalize_observations(obs.slice(row, 1))
        assert refused.value.column == column


def test_a_frame_without_faults_is_kept_whole_and_a_missing_column_is_the_frames_fault():
    from identity.normalize import contract_violations, split_observations

    obs = pl.DataFrame({"source": ["s"], "record_id": ["r"], "id_type": ["phone"], "scope": [""], "id_value": [VALID],
                        "extra": [1]})
    kept, quarantined = split_observations(obs)
    assert kept is obs
    assert quarantined.height == 0 and quarantined.columns == ["row", "column", "reason", *INPUT_COLUMNS[:5]]
    with pytest.raises(ObservationError, match=r"observations lack columns \['record_id'\]"):
        contract_violations(obs.drop("record_id"))
    with pytest.raises(ObservationError, match="column observed_at: must hold datetimes"):
        contract_violations(obs.with_columns(observed_at=pl.lit(20240101)))


@pytest.mark.parametrize("times", [["02/01/2024", "2024-01-05"], ["1/2/2024"], ["2024-01-05", "02/01/2024"]])
def test_day_or_month_first_dates_are_refused_wherever_they_stand(times):
    """polars infers a column's format from its first value, day- and month-first ones too: 02/01/2024 read as
    2 January, 1/2/2024 as 1 February, and only when such a date came first."""
    rows = {"source": ["s"], "record_id": ["r"], "id_type": ["phone"], "scope": [""], "id_value": [VALID]}
    obs = pl.DataFrame({**{key: value * len(times) for key, value in rows.items()}, "observed_at": times})
    with pytest.raises(ObservationError, match=r"column observed_at: '\d+/\d+/2024' is not an ISO time"):
        normalize_observations(obs)


def test_year_first_dates_with_slashes_are_read_beside_iso_ones():
    times = ["2024/05/01 12:00:00", "2024-05-02", "2024/05/03", "2024/5/4 08:30", "2024-05-05T01:00:00Z"]
    rows = {"source": ["s"], "record_id": ["r"], "id_type": ["phone"], "scope": [""], "id_value": [VALID]}
    obs = pl.DataFrame({**{key: value * len(times) for key, value in rows.items()}, "observed_at": times})
    assert [str(value) for value in normalize_observations(obs)["observed_at"]] == [
        "2024-05-01 12:00:00", "2024-05-02 00:00:00", "2024-05-03 00:00:00", "2024-05-04 08:30:00",
        "2024-05-05 09:00:00",
    ]


def test_ids_pandas_made_floats_read_as_the_integers_they_were():
    """pandas turns a column of integer ids into floats once one is missing, and Parquet keeps them so: 17.0 must
    meet the 17 another export wrote as text, and NaN is as empty as null."""
    floats = pl.DataFrame(
        {"source": ["crm", "crm", "crm"], "record_id": [17.0, 18.0, 19.5], "id_type": ["member_id", "phone", "openid"],
         "scope": ["demo_crm", "", "wxapp"], "id_value": [123.0, 13912345678.0, float("nan")]}
    )
    out = normalize_observations(floats)
    assert out.select("record_id", "id_value", "usable").rows() == [
        ("17", "123", True), ("18", VALID, True), ("19.5", None, False),
    ]
    with pytest.raises(ObservationError, match=r"row 2, column record_id: empty"):
        normalize_observations(floats.with_columns(record_id=pl.Series([1.0, float("nan"), None])))
    from identity.normalize import contract_violations

    nan_ids = floats.with_columns(record_id=pl.Series([1.0, float("nan"), None]))
    assert contract_violations(nan_ids).select("row", "column").rows() == [(1, "record_id"), (2, "record_id")]


def test_empty_text_is_null_where_a_csv_would_read_null():
    """A Parquet file or a frame holds "" where a CSV's empty field reads as null: the same rules apply to both."""
    rows = {"source": ["s", "s"], "record_id": ["r1", "r2"], "id_type": ["phone", "phone"], "scope": ["", ""],
            "id_value": [VALID, VALID]}
    config = config_from_dict({"link_strength": {"s.phone": "weak"}})
    out = normalize_observations(pl.DataFrame({**rows, "strength": ["", " "]}), config)
    assert out["strength"].to_list() == ["weak", "weak"]  # unset, so the config's
    with pytest.raises(ObservationError, match=r"row 2, column record_id: empty"):
        normalize_observations(pl.DataFrame({**rows, "record_id": ["r1", ""]}))
    with pytest.raises(ObservationError, match=r"row 1, column source: empty \(2 such rows"):
        normalize_observations(pl.DataFrame({**rows, "source": ["", None]}))


def test_a_header_typed_by_hand_is_named_in_the_error():
    obs = pl.DataFrame({"source": ["s"], " record_id": ["r"], "ID_TYPE": ["phone"], "scope": [""], "id_value": [VALID]})
    with pytest.raises(ObservationError, match=r"lack columns \['record_id', 'id_type'\].*the header has "
                       r"' record_id' for record_id, 'ID_TYPE' for id_type: names are exact"):
        normalize_observations(obs)
