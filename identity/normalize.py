"""Per-type normalization and the blocklist, as polars expressions over whole columns.

Every step here looks at one observation at a time, so it is a plain projection (a SQL `CASE`), unlike the
greedy linking in `resolve`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

from identity.config import GLOBAL_TYPES, SCOPED_TYPES, STRENGTHS, IdentityConfig

INPUT_COLUMNS = ("source", "record_id", "id_type", "scope", "id_value", "observed_at")
OUTPUT_COLUMNS = (
    "source",
    "record_id",
    "id_type",
    "scope",
    "id_value",
    "raw_value",
    "observed_at",
    "strength",
    "usable",
    "unusable_reason",
)

# Reasons that make an identity *blocked* (reported in blocked_values), as opposed to a value that never was an
# identity (empty, masked, malformed).
BLOCK_REASONS = ("junk", "blocklist", "blocklist_pattern", "shared")

PHONE_PATTERN = r"^1[3-9][0-9]{9}$"
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
# Unicode's White_Space (what polars' strip_chars strips by default) and the invisible characters: what every
# value is trimmed of
_TRIMMED = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
    + _INVISIBLE
)
# what phone normalization drops between digits; pipelines/forget.py matches quarantined cells with the same set
PHONE_SEPARATOR_CHARS = f"\\s\\-.()\u2010-\u2015\u2212{_INVISIBLE}"
PHONE_SEPARATORS = f"[{PHONE_SEPARATOR_CHARS}]"
_PHONE_ANNOTATION = r"^(?i:tel):?|[\p{Han}:]"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
HASH_LENGTHS = {"phone_md5": 32, "phone_sha256": 64}

# Placeholders that exports write instead of leaving a field empty; compared case-insensitively. The Chinese ones
# are what hand-kept CRM sheets write: none, none yet, empty, unknown, not given.
GENERIC_JUNK = ("null", "undefined", "none", "nan", "nil", "n/a", "-", "0", "无", "暂无", "空", "未知", "不详")
# Test numbers and keyboard runs that pass (or nearly pass) the mobile pattern and are typed by the thousand.
JUNK_PHONES = ("13800138000", "12345678901", "01234567890")
_ALL_SAME_DIGIT = "^(?:" + "|".join(f"{digit}+" for digit in range(10)) + ")$"


def _case_variants(word: str) -> list[str]:
    variants = [""]
    for char in word:
        variants = [v + c for v in variants for c in sorted({char.lower(), char.upper()})]
    return variants


# every case variant, so that matching needs no lowercasing of every row: the same as `lower(v) in GENERIC_JUNK`,
# since no non-ASCII character lowercases to one of the Latin words' letters (the Chinese words have no case)
_GENERIC_JUNK_CASES = sorted({variant for word in GENERIC_JUNK for variant in _case_variants(word)})


def phone_hashes(phone: str) -> tuple[str, str]:
    data = phone.encode("ascii")
    return hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()


def _junk_hashes() -> dict[str, set[str]]:
    """Hashes of junk phones (and of the empty string) are junk too: partners hash whatever was typed."""
    phones = [""] + list(JUNK_PHONES) + [str(digit) * 11 for digit in range(10)]
    md5s, sha256s = zip(*(phone_hashes(phone) for phone in phones))
    return {"phone_md5": set(md5s), "phone_sha256": set(sha256s)}


JUNK_HASHES = _junk_hashes()


def _with_values(frame: pl.DataFrame) -> pl.DataFrame:
    """Adds normalized `id_value` and `unusable_reason` (null when usable) from `id_type` and trimmed `_trim`.

    Each type is handled on its own slice of rows, and every intermediate is materialized once: polars evaluates
    every branch of a when/then on every row, and phone cleanup is the costliest step, so it only runs on the
    few phones that are not already 11 plain digits. Only the rows whose value or reason differs from the
    default (the trimmed value, usable) are scattered back, so the full frame is never reordered or copied.
    The config blocklist is applied afterwards.
    """
    trimmed = pl.col("_trim")
    frame = frame.with_columns(
        unusable_reason=pl.when(trimmed.is_null() | (trimmed == ""))
        .then(pl.lit("empty"))
        .when(trimmed.is_in(_GENERIC_JUNK_CASES))
        .then(pl.lit("junk"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    # The value is the trimmed text (junk's too) except where a patch below says otherwise: an empty text
    # becomes null, typed values get cleaned. The patches are gathered and scattered once, so the column is
    # copied once (a String scatter copies its 16-byte views, not the text), not once per type.
    patched_rows = [np.flatnonzero((frame["_trim"] == "").fill_null(False).to_numpy())]
    patched_values = [pl.Series("id_value", [None] * len(patched_rows[0]), dtype=pl.String)]
    patched_reasons = [frame["unusable_reason"].gather(patched_rows[0])]
    pending = frame["unusable_reason"].is_null()
    id_type = frame["id_type"]
    typed = [
        (_phones, pending & (id_type == "phone")),
        (_emails, pending & (id_type == "email")),
        (_hashes, pending & id_type.is_in(list(HASH_LENGTHS))),
    ]
    for clean, rows in typed:
        rows = np.flatnonzero(rows.to_numpy())
        if len(rows) == 0:
            continue
        part = frame.select("id_type", "_trim", "unusable_reason")[rows]
        part = clean(part.with_columns(_order=pl.Series(rows, dtype=pl.Int64)))
        # only rows whose result differs from the default (trimmed value, usable) are written back
        part = part.filter(
            pl.col("unusable_reason").is_not_null() | pl.col("id_value").is_null() | (pl.col("id_value") != trimmed)
        )
        if part.height:
            patched_rows.append(part["_order"].to_numpy())
            patched_values.append(part["id_value"].cast(pl.String))
            patched_reasons.append(part["unusable_reason"].cast(pl.String))
    at = np.concatenate(patched_rows)
    id_value, reason = frame["_trim"].alias("id_value"), frame["unusable_reason"]
    if len(at):
        id_value = id_value.clone().scatter(at, pl.concat(patched_values))
        reason = reason.clone().scatter(at, pl.concat(patched_reasons))
    return frame.with_columns(id_value, reason)


def _non_ascii(values: pl.Series) -> pl.Series:
    """Whether each value holds a character beyond ASCII (the only ones NFKC or the invisible characters touch)."""
    return (values.str.len_bytes() != values.str.len_chars()).fill_null(False)


def _where(values: pl.Series, rows: pl.Series, change) -> pl.Series:
    """`values` with `change` (Series -> Series of as many values) applied to the `rows` only. polars computes
    both branches of a when/then on every row, and NFKC or a regex replacement costs 0.15-0.4 s per 2M values,
    for the few that need it (exported phones with dashes are ASCII)."""
    if not rows.any():
        return values
    at = rows.arg_true()
    return values.clone().scatter(at, change(values.gather(at)))


def _phones(part: pl.DataFrame) -> pl.DataFrame:
    plain = part["_trim"].str.contains(PHONE_PATTERN)
    clean = part.filter(plain).with_columns(
        id_value=pl.col("_trim"),
        unusable_reason=pl.when(pl.col("_trim").is_in(JUNK_PHONES)).then(pl.lit("junk")),
    )
    messy = part.filter(~plain)
    wide = _where(messy["_trim"], _non_ascii(messy["_trim"]), lambda values: values.str.normalize("NFKC"))
    # a phone a spreadsheet or pandas turned into a float ("13912345678.0") is still that phone; one in
    # scientific notation ("1.39123E+10") has lost digits and stays invalid
    floated = wide.str.ends_with("0") & wide.str.contains(".", literal=True)
    wide = _where(wide, floated, lambda values: values.str.replace(r"(\d)\.0+$", "${1}"))
    messy = messy.with_columns(_wide=wide)
    # text copied from chats and web pages brings invisible characters (zero-width space, joiners, a byte-order
    # mark) and typographic dashes that NFKC leaves as they are
    messy = messy.with_columns(_digits=pl.col("_wide").str.replace_all(PHONE_SEPARATORS, ""))
    # CRM and form exports annotate phones by hand ("手机：139...", "139...(本人)", "tel:+86..."): the Chinese
    # words and the colon go; Latin letters stay ("13912345678x" is a typo, not a phone)
    messy = messy.with_columns(_digits=pl.col("_digits").str.replace_all(_PHONE_ANNOTATION, ""))
    digits = pl.col("_digits")
    messy = messy.with_columns(
        _digits=pl.when(digits.str.starts_with("+86"))
        .then(digits.str.slice(3))
        .when(digits.str.starts_with("0086"))
        .then(digits.str.slice(4))
        .when(digits.str.starts_with("86") & (digits.str.len_chars() == 13))
        .then(digits.str.slice(2))
        .otherwise(digits)
    )
    messy = messy.with_columns(
        unusable_reason=pl.when(pl.col("_wide").str.contains("*", literal=True))
        .then(pl.lit("masked"))
        .when(pl.col("_trim").str.starts_with("##") | pl.col("_trim").str.starts_with("$$"))
        .then(pl.lit("ciphertext"))
        .when(digits.is_in(JUNK_PHONES) | digits.str.contains(_ALL_SAME_DIGIT))
        .then(pl.lit("junk"))
        .when(~digits.str.contains(PHONE_PATTERN))
        .then(pl.lit("invalid_phone"))
    )
    messy = messy.with_columns(
        id_value=pl.when(pl.col("unusable_reason").is_null() | (pl.col("unusable_reason") == "junk")).then(digits)
    )
    return pl.concat([clean, messy.drop("_wide", "_digits")])


def _emails(part: pl.DataFrame) -> pl.DataFrame:
    # invisible characters and a "mailto:" prefix come with addresses copied from web pages and mail clients
    email = _where(
        part["_trim"],
        _non_ascii(part["_trim"]),
        lambda values: values.str.normalize("NFKC").str.replace_all(f"[{_INVISIBLE}]", "").str.strip_chars(),
    )
    # a full stop typed after the address ends no address that mail is delivered to
    email = email.str.to_lowercase().str.strip_prefix("mailto:").str.strip_chars_end(".")
    part = part.with_columns(_email=email)
    valid = pl.col("_email").str.contains(EMAIL_PATTERN)
    return part.with_columns(
        id_value=pl.when(valid).then(pl.col("_email")),
        unusable_reason=pl.when(valid).then(None).otherwise(pl.lit("invalid_email")),
    ).drop("_email")


def _hashes(part: pl.DataFrame) -> pl.DataFrame:
    part = part.with_columns(_hex=pl.col("_trim").str.to_lowercase())
    length = pl.col("id_type").replace_strict(HASH_LENGTHS, return_dtype=pl.UInt32)
    well_formed = pl.col("_hex").str.contains(r"^[0-9a-f]+$") & (pl.col("_hex").str.len_bytes() == length)
    junk = pl.lit(False)
    for hash_type, hashes in JUNK_HASHES.items():
        junk = junk | ((pl.col("id_type") == hash_type) & pl.col("_hex").is_in(sorted(hashes)))
    part = part.with_columns(
        unusable_reason=pl.when(~well_formed).then(pl.lit("invalid_hash")).when(junk).then(pl.lit("junk"))
    )
    return part.with_columns(
        id_value=pl.when(pl.col("unusable_reason").is_null() | (pl.col("unusable_reason") == "junk")).then(
            pl.col("_hex")
        )
    ).drop("_hex")


def _config_blocklist(config: IdentityConfig) -> pl.DataFrame:
    """Config values normalized like observations, so `138 0013 8000` in the YAML blocks `13800138000`."""
    rows = [(id_type, value) for id_type, rule in config.blocklist.items() for value in rule.values]
    # a blocked phone's hashes are blocked too, or a partner's md5 of the front-desk phone would still link
    frame = pl.DataFrame(rows, schema={"id_type": pl.String, "_trim": pl.String}, orient="row")
    frame = _with_values(frame.with_columns(pl.col("_trim").str.strip_chars()))
    frame = frame.with_columns(id_value=pl.coalesce("id_value", "_trim"))
    phones = frame.filter((pl.col("id_type") == "phone") & (pl.col("unusable_reason").is_null()))
    hashed = [
        (hash_type, digest)
        for phone in phones["id_value"].to_list()
        for hash_type, digest in zip(("phone_md5", "phone_sha256"), phone_hashes(phone))
    ]
    extra = pl.DataFrame(hashed, schema={"id_type": pl.String, "id_value": pl.String}, orient="row")
    return pl.concat([frame.select("id_type", "id_value"), extra]).unique().with_columns(
        _blocked=pl.lit("blocklist")
    )


def with_blocklist_reason(
    frame: pl.DataFrame, config: IdentityConfig, type_column: str, value_column: str
) -> pl.DataFrame:
    """Adds `_block_reason`: why the config blocklist refuses (type, value), null when it does not."""
    listed = _config_blocklist(config).rename({"id_type": type_column, "id_value": value_column})
    if listed.height:
        frame = frame.join(listed, on=[type_column, value_column], how="left", maintain_order="left")
    else:
        frame = frame.with_columns(_blocked=pl.lit(None, dtype=pl.String))
    reason = pl.when(pl.col("_blocked").is_not_null()).then(pl.col("_blocked"))
    for id_type, rule in config.blocklist.items():
        for pattern in rule.patterns:
            # anchored, so a pattern is about the whole value and `400` does not block every number holding it
            matches = pl.col(value_column).str.contains(f"^(?:{pattern})$")
            reason = reason.when((pl.col(type_column) == id_type) & matches).then(pl.lit("blocklist_pattern"))
    return frame.with_columns(_block_reason=reason.otherwise(pl.lit(None, dtype=pl.String))).drop("_blocked")


_ISO_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d")
# ISO, and the year-first form with slashes that Chinese spreadsheets write (2024/05/01 12:00:00): unambiguous too
_NAIVE_FORMATS = (*_ISO_FORMATS, "%Y/%m/%d %H:%M:%S%.f", "%Y/%m/%d %H:%M", "%Y/%m/%d")


def _observed_at(column: pl.Series | None) -> pl.Expr:
    if column is None:
        return pl.lit(None, dtype=pl.Datetime("us"))
    dtype = column.dtype
    expr = pl.col("observed_at")
    if dtype == pl.String:
        # The format is the first time's, as polars would infer it, but only ever an ISO or year-first one:
        # polars' own inference also takes day- and month-first dates, so a file whose first time read 02/01/2024
        # had every such date read as 2 January and one whose first read 1/2/2024 as 1 February. Rows of another
        # format are tried again one by one (`_times_parsed`) and refused if they are not ISO.
        first = column.drop_nulls().head(100).str.strip_chars()
        first = first.filter(first != "").head(1)
        for time_format in _NAIVE_FORMATS:
            if len(first) and first.str.to_datetime(time_format, strict=False, time_unit="us").is_not_null().all():
                return expr.str.to_datetime(time_format, strict=False, time_unit="us")
        return pl.lit(None, dtype=pl.Datetime("us"))
    if dtype == pl.Date:
        return expr.cast(pl.Datetime("us"))
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            # the contract stores naive China time; an aware input is converted, not relabelled
            expr = expr.dt.convert_time_zone("Asia/Shanghai").dt.replace_time_zone(None)
        return expr.cast(pl.Datetime("us"))
    if dtype == pl.Null:
        return expr.cast(pl.Datetime("us"))
    raise ObservationError(f"must hold datetimes, dates or ISO times as text, not {dtype}", "observed_at")


def _iso_times(times: pl.Series) -> pl.Series:
    """ISO times, each parsed by itself: with a UTC offset (`+08:00`, `+0800`, `Z`) converted to naive China time,
    without one taken as China time; null for anything else. polars' own parse infers one format from the first
    value, so a column mixing the two kinds (or dates and times) leaves the other kind null."""
    text = times.str.strip_chars().str.replace(r"[Zz]$", "+00:00")
    aware = pl.coalesce([text.str.to_datetime(f + "%z", strict=False, time_unit="us") for f in _ISO_FORMATS[:4]])
    naive = pl.coalesce([text.str.to_datetime(f, strict=False, time_unit="us") for f in _NAIVE_FORMATS])
    china = aware.dt.convert_time_zone("Asia/Shanghai").dt.replace_time_zone(None)
    return pl.select(pl.coalesce(china, naive)).to_series()


def as_text(obs: pl.DataFrame, column: str) -> pl.Expr:
    """`column` as text. A float column is what pandas makes of integer ids once one of them is missing: its whole
    numbers are written as integers (17, not 17.0), so that they meet the same ids exported as text, and NaN is
    null."""
    expr = pl.col(column)
    if not obs.schema[column].is_float():
        return expr.cast(pl.String)
    expr = expr.fill_nan(None)
    whole = (expr == expr.floor()) & (expr.abs() < 2.0**63)
    return pl.when(whole).then(expr.cast(pl.Int64).cast(pl.String)).otherwise(expr.cast(pl.String))


def _tidy(obs: pl.DataFrame, column: str, lower: bool, empty_is_null: bool = False) -> pl.Expr:
    """`column` as text, stripped (and lowercased; with `empty_is_null`, what is then empty is null). These columns
    hold a handful of distinct values, usually clean already: then the column is passed through instead of
    transforming every row."""
    expr = as_text(obs, column).str.strip_chars()
    if lower:
        expr = expr.str.to_lowercase()
    if empty_is_null:
        expr = pl.when(expr != "").then(expr)
    distinct = obs.select(as_text(obs, column).unique())
    if distinct.height <= 10_000 and distinct.select(expr).to_series().equals(distinct.to_series()):
        return as_text(obs, column)
    return expr


class ObservationError(ValueError):
    """Observations that break the input contract. `row`: 0-based position of the first offending row (None when
    the problem is not a row's, e.g. a missing column); `column`: the column at fault; `source`: the file, when
    known; `header`: rows are a CSV's, counted after its header line."""

    def __init__(
        self, detail: str, column: str | None = None, row: int | None = None, source: str | None = None,
        header: bool = False,
    ):
        self.detail, self.column, self.row, self.source, self.header = detail, column, row, source, header
        super().__init__(self._where() + detail)

    def in_source(self, source: str, first_row: int = 0, header: bool = False) -> ObservationError:
        """The same error said of `source`, a file whose rows begin at `first_row` (0-based) of it."""
        row = None if self.row is None else first_row + self.row
        return ObservationError(self.detail, self.column, row, source, header)

    def _where(self) -> str:
        parts = [self.source] if self.source else []
        if self.row is not None:
            parts.append(f"row {self.row + 1}" + (" after the header" if self.header else ""))
        if self.column:
            parts.append(f"column {self.column}")
        return ", ".join(parts) + ": " if parts else ""


def _first_row(mask: pl.Series) -> int:
    return int(mask.arg_true()[0])


def unfamiliar_id_types(obs: pl.DataFrame, config: IdentityConfig) -> dict[str, int]:
    """Rows per id_type that neither the rules nor `config` name (e.g. `mobile` for `phone`): such values link
    as they are, with no normalization, scope or junk check, which is right for a brand's own kind of id and
    wrong for a misspelt known type."""
    named = {*GLOBAL_TYPES, *SCOPED_TYPES, *config.id_type_priority, *config.unique_types, *config.blocklist}
    named |= {key.rsplit(".", 1)[-1] for key in config.link_strength}
    # counted on the raw values first: a column has a handful of distinct types and millions of rows
    counts = obs.group_by(pl.col("id_type").cast(pl.String)).len().drop_nulls()
    counts = (
        counts.group_by(pl.col("id_type").str.strip_chars().str.to_lowercase())
        .agg(pl.col("len").sum())
        .filter(~pl.col("id_type").is_in(sorted(named)))
        .sort(["len", "id_type"], descending=[True, False])
    )
    return dict(zip(counts["id_type"].to_list(), counts["len"].to_list()))


REQUIRED_COLUMNS = ("source", "record_id", "id_type")
BAD_TIME = "is not an ISO time such as 2024-05-01 12:00:00"
BAD_STRENGTH = "strength must be strong or weak (or empty)"


def _missing(values: pl.Series) -> pl.Series:
    """Null, empty text (what a CSV's empty field reads as, and so what a Parquet file's "" must mean too), or NaN
    in a float column (see `as_text`)."""
    if values.dtype.is_float():
        return values.is_null() | values.is_nan().fill_null(False)
    if values.dtype == pl.String:
        return values.is_null() | (values.str.len_bytes() == 0).fill_null(False)
    return values.is_null()


def _check_columns(obs: pl.DataFrame) -> None:
    missing = [column for column in INPUT_COLUMNS if column not in obs.columns and column != "observed_at"]
    if missing:
        # a header typed by hand: "Record_ID", "id_value " or "source, record_id" with a space after the comma
        near = {name.strip().lower(): name for name in obs.columns}
        misspelt = [f"{near[column]!r} for {column}" for column in missing if column in near]
        raise ObservationError(
            f"observations lack columns {missing}; expected {list(INPUT_COLUMNS)} (+ strength)"
            + (f"; the header has {', '.join(misspelt)}: names are exact, in lower case without spaces" if misspelt
               else "")
        )


def _times_parsed(obs: pl.DataFrame, parsed: pl.Series) -> tuple[pl.Series, pl.Series | None]:
    """`parsed` (observed_at as `_observed_at` reads it) with the rows it left null tried again as ISO times of
    mixed kinds, and the mask of the times given that are still null: None when the column is not text."""
    if "observed_at" not in obs.columns or obs["observed_at"].dtype != pl.String:
        return parsed, None
    # a time that silently became null would move its links to the end of the order
    given = obs["observed_at"].str.strip_chars().fill_null("") != ""
    unparsed = given & parsed.is_null()
    if unparsed.any():
        # a column mixing kinds of ISO time, e.g. with an offset or Z (from APIs and JavaScript) and without
        parsed = pl.select(pl.coalesce(parsed, _iso_times(obs["observed_at"]))).to_series().alias("observed_at")
        unparsed = given & parsed.is_null()
    return parsed, unparsed


def _bad_strengths(strength: pl.Series) -> pl.Series | None:
    """The mask of rows whose (tidied) strength is neither strong nor weak; None when there are none, which the
    column's few distinct values tell without a pass over every row."""
    strengths = strength.unique().drop_nulls()
    if strengths.is_in(list(STRENGTHS)).all():
        return None
    return strength.is_not_null() & ~strength.is_in(list(STRENGTHS))


def contract_violations(obs: pl.DataFrame) -> pl.DataFrame:
    """The rows for which `normalize_observations` (and so `resolve`) would refuse `obs`, each once: `row`
    (0-based position), `column` (the first at fault, in the order source, record_id, id_type, observed_at,
    strength) and `reason`. Empty when every row is fine. A missing column or an observed_at column of a type
    that holds no times is the whole frame's fault, not a row's: raised as ObservationError."""
    _check_columns(obs)
    checks = [(column, "empty", _missing(obs[column])) for column in REQUIRED_COLUMNS]
    if "observed_at" in obs.columns:
        parsed = obs.select(_observed_at(obs["observed_at"])).to_series()
        _, unparsed = _times_parsed(obs, parsed)
        if unparsed is not None:
            checks.append(("observed_at", BAD_TIME, unparsed))
    if "strength" in obs.columns:
        bad = _bad_strengths(obs.select(_tidy(obs, "strength", lower=True, empty_is_null=True)).to_series())
        if bad is not None:
            checks.append(("strength", BAD_STRENGTH, bad))
    masks = pl.DataFrame({f"_{i}": mask for i, (_, _, mask) in enumerate(checks)})
    column = reason = None
    for i, (name, why, _) in enumerate(checks):
        at_fault = pl.col(f"_{i}")
        column = (pl.when(at_fault) if column is None else column.when(at_fault)).then(pl.lit(name))
        reason = (pl.when(at_fault) if reason is None else reason.when(at_fault)).then(pl.lit(why))
    return (
        masks.with_row_index("row")
        .select(pl.col("row").cast(pl.Int64), column.alias("column"), reason.alias("reason"))
        .filter(pl.col("column").is_not_null())
    )


def split_observations(obs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the rows `resolve` accepts, the others): the rows of `contract_violations`, each with its `row`, `column`
    and `reason` before its contract columns (and strength) as text. The first is `obs` itself when no row is at
    fault. For a tool that would rather set bad rows aside, and say how many, than refuse a whole export for one
    of them."""
    violations = contract_violations(obs)
    contract = [column for column in (*INPUT_COLUMNS, "strength") if column in obs.columns]
    texts = [as_text(obs, column) for column in contract]
    if violations.is_empty():
        return obs, violations.hstack(obs.clear().select(texts))
    at_fault = pl.int_range(pl.len(), dtype=pl.Int64).is_in(violations["row"])
    return obs.filter(~at_fault), violations.hstack(obs.filter(at_fault).select(texts))


def normalize_observations(obs: pl.DataFrame, config: IdentityConfig | None = None) -> pl.DataFrame:
    """Normalized observations in input order, with `raw_value`, `strength`, `usable` and `unusable_reason`.

    Columns other than the contract's are dropped. `usable` is false for empty, malformed, masked, ciphertext,
    junk and blocklisted values; `resolve` additionally marks shared values.
    """
    if config is None:
        config = IdentityConfig()
    _check_columns(obs)
    for column in REQUIRED_COLUMNS:
        if obs[column].null_count() or obs[column].dtype in (pl.String, pl.Float32, pl.Float64):
            missing = _missing(obs[column])
            if missing.any():
                raise ObservationError(f"empty ({missing.sum():,} such rows in all)", column, _first_row(missing))

    strength = pl.lit(None, dtype=pl.String)
    if "strength" in obs.columns:
        strength = _tidy(obs, "strength", lower=True, empty_is_null=True)
    # One chunk per column (a no-op when the input has that): a column rebuilt below (the values) must line up
    # with the others, or polars copies every column of the frame to realign them at the next step, several
    # times over. At 27M observations read from Parquet in 223 chunks that was 4.6 GB and 14 s; now about 1 GB, 10 s.
    frame = obs.select(
        as_text(obs, "source"),
        as_text(obs, "record_id"),
        _tidy(obs, "id_type", lower=True),
        _tidy(obs, "scope", lower=False),
        as_text(obs, "id_value").alias("raw_value"),
        _observed_at(obs.get_column("observed_at") if "observed_at" in obs.columns else None).alias("observed_at"),
        strength.alias("strength"),
    ).rechunk()

    times, unparsed = _times_parsed(obs, frame["observed_at"])
    if unparsed is not None:
        frame = frame.with_columns(observed_at=times)
        if unparsed.any():
            first = _first_row(unparsed)
            raise ObservationError(
                f"{obs['observed_at'][first]!r} {BAD_TIME} ({unparsed.sum():,} such values in all)",
                "observed_at",
                first,
            )
    bad = _bad_strengths(frame["strength"])
    if bad is not None:
        first = _first_row(bad)
        others = frame["strength"].filter(bad).unique(maintain_order=True).to_list()
        others = [value for value in others if value != frame["strength"][first]]
        raise ObservationError(
            f"{obs['strength'][first]!r}: {BAD_STRENGTH}" + (f"; other such values: {others[:5]}" if others else ""),
            "strength",
            first,
        )
    frame = _fill_strength(frame, config)

    id_type = pl.col("id_type")
    is_global = id_type.is_in(list(GLOBAL_TYPES))
    # rewritten only when some row needs it, so that a clean column stays shared with the input
    if frame.select((pl.col("scope").is_null() | (is_global & (pl.col("scope") != ""))).any()).item():
        frame = frame.with_columns(scope=pl.when(is_global).then(pl.lit("")).otherwise(pl.col("scope").fill_null("")))
    frame = frame.with_columns(_trim=_stripped(frame["raw_value"]))
    frame = _with_values(frame).drop("_trim")
    # The next two rewrite every row's reason (together 0.1-0.3 s of normalization's 1.2-1.5 s at 10M rows), so
    # each runs only when some row can need it: a scoped type without its scope, a blocklist in the config.
    missing_scope = pl.col("unusable_reason").is_null() & id_type.is_in(list(SCOPED_TYPES)) & (pl.col("scope") == "")
    if frame.select(missing_scope.any()).item():
        frame = frame.with_columns(
            unusable_reason=pl.when(missing_scope).then(pl.lit("missing_scope")).otherwise(pl.col("unusable_reason"))
        )
    if any(rule.values or rule.patterns for rule in config.blocklist.values()):
        frame = with_blocklist_reason(frame, config, "id_type", "id_value")
        frame = frame.with_columns(unusable_reason=pl.coalesce("unusable_reason", "_block_reason"))
    frame = frame.with_columns(usable=pl.col("unusable_reason").is_null())
    return frame.select(OUTPUT_COLUMNS)


def _stripped(values: pl.Series) -> pl.Series:
    """`values` stripped of surrounding whitespace and invisible characters (an openid copied from a chat or a web
    page into a CRM sheet brings a zero-width space or a byte-order mark, and then meets nothing); the column
    itself when none has any, so that its text is shared instead of copied (exports are mostly clean; a copy is
    1 GB at 27M observations). One pass with the characters named costs what polars' whitespace strip does."""
    stripped = values.str.strip_chars(_TRIMMED)
    return values if stripped.equals(values) else stripped


def _fill_strength(frame: pl.DataFrame, config: IdentityConfig) -> pl.DataFrame:
    if frame["strength"].null_count() == 0:
        return frame  # every row has its strength: nothing to fill, and the column stays shared
    if not config.link_strength:
        return frame.with_columns(pl.col("strength").fill_null("strong"))
    by_pair = {key: value for key, value in config.link_strength.items() if "." in key}
    by_type = {key: value for key, value in config.link_strength.items() if "." not in key}
    pair = pl.concat_str([pl.col("source"), pl.lit("."), pl.col("id_type")])
    configured = pl.coalesce(
        pair.replace_strict(by_pair, default=None, return_dtype=pl.String),
        pl.col("id_type").replace_strict(by_type, default=None, return_dtype=pl.String),
        pl.lit("strong"),
    )
    return frame.with_columns(strength=pl.coalesce(pl.col("strength"), configured))
