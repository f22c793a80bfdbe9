"""Strings in, typed canonical rows and quarantine entries out, in a handful of vectorized passes.

Each canonical field yields two columns: its typed value and ``__e_<field>``, the reason the row cannot
be trusted because of that field (NULL when fine). A row with any reason goes to quarantine, once per
bad field, with the export column name and the value as it was in the file; every other row loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datetime import date, datetime

import polars as pl

from .catalog import CANONICAL_COLUMNS
from .config import DEFAULT_TIMEZONE, EPOCH_FORMATS, KIND_BY_SQL_TYPE, FieldSpec, Layout, Rule
from .readers import ROW

DTYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int32(),
    "bigint": pl.Int64(),
    "timestamp": pl.Datetime("us"),
    "date": pl.Date(),
    "amount": pl.Decimal(18, 2),
}

QUARANTINE_SCHEMA = {
    "row_number": pl.Int64, "column_name": pl.String, "raw_value": pl.String, "reason": pl.String,
}

_INT = r"^[+-]?\d+$"
_YUAN = r"^\d{1,16}(\.\d{1,2})?$"
_FEN = r"^\d{1,18}$"
_NEGATIVE = r"^-\s*\d+(\.\d+)?$"
_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class Transformed:
    rows: pl.DataFrame  # record_id, canonical columns in table order, _row_number
    quarantine: pl.DataFrame  # row_number, column_name, raw_value, reason
    rows_quarantined: int  # distinct data rows / lines with at least one quarantine entry


def _in(i: int) -> str:
    return f"__in{i}"


def _clean(expr: pl.Expr, null_values: tuple[str, ...], excel_wrapped: bool) -> pl.Expr:
    """Trim whitespace and tab prefixes, unwrap Excel's ``="..."`` text guard; empty means NULL."""
    s = expr.str.strip_chars()
    if excel_wrapped:
        # polars evaluates both branches of a when/then, so the unwrap only runs on columns that need it.
        unwrapped = s.str.slice(2).str.strip_suffix('"').str.strip_chars()
        s = pl.when(s.str.starts_with('="') & s.str.ends_with('"')).then(unwrapped).otherwise(s)
    # replace() is about twice as fast as when/then here, which copies every string of the column again.
    return s.replace(["", *null_values], None)


def _to_shanghai(expr: pl.Expr, tz: str) -> pl.Expr:
    if tz == DEFAULT_TIMEZONE:
        return expr
    return (
        expr.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone(DEFAULT_TIMEZONE)
        .dt.replace_time_zone(None)
    )


# No export field is legitimately this long (openids are 28 characters, names a few dozen): a longer value is
# a broken file or an attack, and would bloat every table and log it reaches.
MAX_FIELD_CHARS = 4096
# Event times outside this window are placeholders or corrupt (WeChat dates from 2011, Taobao from 2003);
# birthdays before 1900-01-02 are the "unknown" placeholder 1900-01-01 or older than any living person.
# Fixed bounds, not "now": the same file must load the same way whenever it is loaded.
TIME_BOUNDS = (datetime(2000, 1, 1), datetime(2099, 12, 31, 23, 59, 59))
DATE_BOUNDS = (date(1900, 1, 2), date(2099, 12, 31))


def _typed(c: pl.Expr, f: FieldSpec) -> tuple[pl.Expr, pl.Expr | None]:
    """(typed value, error reason) for a cleaned string column ``c``."""
    if f.kind == "string":
        err = (
            pl.when(c.str.len_chars() > MAX_FIELD_CHARS).then(pl.lit(f"value longer than {MAX_FIELD_CHARS} characters"))
            # NUL and other C0 controls (not tab/newline) only come from corrupt or binary data
            .when(c.str.contains(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")).then(pl.lit("control character in value"))
        )
        return c, err
    present = c.is_not_null()
    if f.kind in ("integer", "bigint"):
        ok = c.str.contains(_INT)
        value = pl.when(ok).then(c.str.to_integer(strict=False))
        if f.kind == "integer":
            value = value.cast(pl.Int32, strict=False)
        err = (
            pl.when(present & ~ok).then(pl.lit("not an integer"))
            .when(present & value.is_null()).then(pl.lit("integer out of range"))
        )
        return value, err
    if f.kind == "amount":
        if f.unit == "fen":
            ok = c.str.contains(_FEN)
            # Cast to scale 2 first: the unscaled value is then fen * 100, and dividing it by 100 is exact
            # integer arithmetic (dividing a scale-0 decimal would round 1999 fen to 20.00).
            value = (pl.when(ok).then(c.str.to_integer(strict=False)).cast(pl.Decimal(20, 2)) / 100).cast(pl.Decimal(18, 2))
            bad = "not a whole number of fen"
        else:
            c = c.str.replace_all(r"[,¥￥]", "")
            ok = c.str.contains(_YUAN)
            value = pl.when(ok).then(c.str.to_decimal(scale=2)).cast(pl.Decimal(18, 2))
            bad = "not an amount in yuan (digits with at most 2 decimals)"
        err = (
            pl.when(present & c.str.contains(_NEGATIVE)).then(pl.lit("negative amount"))
            .when(present & ~ok).then(pl.lit(bad))
        )
        return value, err
    if f.kind in ("timestamp", "date"):
        parsed = []
        for fmt in f.formats:
            if fmt in EPOCH_FORMATS:
                # Bounded so that a value in the wrong unit is quarantined instead of overflowing the column.
                digits = c.str.contains(r"^\d{1,11}$" if fmt == "unix_seconds" else r"^\d{1,14}$")
                unit = "s" if fmt == "unix_seconds" else "ms"
                v = pl.from_epoch(pl.when(digits).then(c.str.to_integer(strict=False)), time_unit=unit)
                # Epoch time is absolute: it becomes China wall time whatever `timezone` says.
                v = v.dt.replace_time_zone("UTC").dt.convert_time_zone(DEFAULT_TIMEZONE).dt.replace_time_zone(None)
                if f.kind == "date":
                    v = v.dt.date()
            elif f.kind == "timestamp" and "%z" in fmt:
                # The value carries its own offset; `timezone` does not apply.
                v = c.str.to_datetime(fmt, strict=False, time_unit="us", time_zone=DEFAULT_TIMEZONE).dt.replace_time_zone(None)
            elif f.kind == "timestamp":
                v = _to_shanghai(c.str.to_datetime(fmt, strict=False, time_unit="us"), f.timezone)
            else:
                v = c.str.to_date(fmt, strict=False)
            parsed.append(v)
        value = pl.coalesce(parsed) if len(parsed) > 1 else parsed[0]
        value = value.cast(DTYPES[f.kind])
        what = "time" if f.kind == "timestamp" else "date"
        low, high = TIME_BOUNDS if f.kind == "timestamp" else DATE_BOUNDS
        err = (
            pl.when(present & value.is_null()).then(pl.lit(f"unparseable {what} (expected {' or '.join(f.formats)})"))
            .when(present & ((value < pl.lit(low)) | (value > pl.lit(high))))
            .then(pl.lit(f"implausible {what} (outside {low:%Y-%m-%d} .. {high:%Y-%m-%d})"))
        )
        return value, err
    raise AssertionError(f.kind)


def _rule_condition(rule: Rule) -> pl.Expr:
    cond = pl.lit(True)
    for name, values in rule.equals:
        wanted = [v for v in values if v is not None]
        term = pl.col(name).is_in(wanted) if wanted else pl.lit(False)
        if None in values:
            term = term | pl.col(name).is_null()
        cond = cond & term
    for name in rule.has:
        cond = cond & pl.col(name).is_not_null()
    for name in rule.lacks:
        cond = cond & pl.col(name).is_null()
    if rule.refund:
        paid = pl.col("paid_amount").fill_null(0)
        refunded = pl.col("refunded_amount").fill_null(0)
        cond = cond & {
            "none": refunded == 0,
            "partial": (refunded > 0) & (refunded < paid),
            "full": (refunded > 0) & (refunded >= paid),
        }[rule.refund]
    return cond


def transform(frame: pl.DataFrame, layout: Layout, scope: dict[str, str]) -> Transformed:
    columns = CANONICAL_COLUMNS[layout.source]
    paths = list(layout.input_paths)
    slot = {p: _in(i) for i, p in enumerate(paths)}
    base = [f for f in layout.fields if not f.derived]
    derived = [f for f in layout.fields if f.derived]

    # Pass 0: inputs under private names (export columns may share names with canonical ones).
    df = frame.select(
        ROW,
        *[(pl.col(p) if p in frame.columns else pl.lit(None, pl.String)).alias(slot[p]) for p in paths],
    )

    # Pass 1: cleaned text per input.
    wrapped = [False] * len(paths)
    if df.height:
        wrapped = df.select(pl.col(slot[p]).str.starts_with('="').any().alias(slot[p]) for p in paths).row(0)
    # From here on one lazy plan: polars then computes each cleaned/typed value once even though the
    # value, its error and the rules all refer to it (eager evaluation would recompute shared expressions).
    lf = df.lazy().with_columns(
        _clean(pl.col(slot[p]), layout.null_values, bool(w)).alias(f"__c{slot[p]}") for p, w in zip(paths, wrapped)
    )
    have = set(df.columns)

    # Pass 2: typed values and per-field errors.
    exprs: list[pl.Expr] = []
    # (error column, reported column name, raw slots whose first non-empty value is reported)
    errors: list[tuple[str, str | None, tuple[str, ...]]] = []
    for f in base:
        srcs = f.sources
        cleaned = [pl.col(f"__c{slot[p]}") for p in srcs]
        c = pl.coalesce(cleaned) if len(cleaned) > 1 else cleaned[0]
        if f.default is not None:
            c = c.fill_null(pl.lit(f.default))
        map_err = None
        if f.mapping is not None:
            keys = [k for k, _ in f.mapping]
            mapped = c.replace_strict(keys, [v for _, v in f.mapping], default=None, return_dtype=pl.String)
            fallback = {"keep": c, "null": pl.lit(None, pl.String), "quarantine": pl.lit(None, pl.String)}[f.unmapped]
            known = c.is_in(keys)
            if f.unmapped == "quarantine":
                shown = ", ".join(keys[:8]) + (" …" if len(keys) > 8 else "")
                map_err = pl.when(c.is_not_null() & ~known).then(pl.lit(f"unknown value (expected one of {shown})"))
            c = pl.when(known).then(mapped).otherwise(fallback)
        value, type_err = _typed(c, f)
        if f.name in scope:
            value = pl.coalesce(value, pl.lit(scope[f.name]))
        err_parts = []
        if f.required:
            err_parts.append(pl.when(value.is_null() & c.is_null()).then(pl.lit("missing required value")))
        if map_err is not None:
            err_parts.append(map_err)
        if type_err is not None:
            err_parts.append(type_err)
        exprs.append(value.cast(DTYPES[f.kind]).alias(f.name))
        if err_parts:
            err = pl.coalesce(err_parts) if len(err_parts) > 1 else err_parts[0]
            exprs.append(err.cast(pl.String).alias(f"__e_{f.name}"))
            errors.append((f"__e_{f.name}", " / ".join(srcs), tuple(slot[p] for p in srcs)))
    for i, check in enumerate(layout.checks):
        c = pl.col(f"__c{slot[check.source]}")
        exprs.append(pl.when(c.is_not_null() & ~c.is_in(list(check.allowed))).then(pl.lit(check.reason)).alias(f"__e_check{i}"))
        errors.append((f"__e_check{i}", check.source, (slot[check.source],)))
    lf = lf.with_columns(exprs)
    have |= {f.name for f in base} | {e for e, _, _ in errors}

    # A row needs one field of each `require_any` group (a referral side: openid or unionid).
    group_exprs = []
    for i, group in enumerate(layout.require_any):
        srcs = [p for n in group for p in layout.field(n).sources]  # type: ignore[union-attr]
        group_exprs.append(
            pl.when(pl.all_horizontal([pl.col(n).is_null() for n in group]))
            .then(pl.lit(f"missing required value (needs one of {', '.join(group)})")).alias(f"__e_any{i}")
        )
        errors.append((f"__e_any{i}", " / ".join(srcs), tuple(slot[p] for p in srcs)))
    if group_exprs:
        lf = lf.with_columns(group_exprs)

    # Scope values for columns the export does not carry at all (the OA appid, the platform, ...).
    mapped_names = {f.name for f in layout.fields}
    lf = lf.with_columns(pl.lit(v, pl.String).alias(k) for k, v in scope.items() if k not in mapped_names)
    have |= set(scope)

    # Pass 3: derived fields (order_status from raw_status, payment and refund), first matching rule wins,
    # in declaration order (a derived refunded_amount is there for the order_status rules after it).
    for f in derived:
        assert f.rules is not None
        conds = [_rule_condition(r) for r in f.rules]
        thens = [
            pl.col(r.then_field).cast(DTYPES[f.kind]) if r.then_field
            else _typed(pl.lit(r.then, pl.String), f)[0].cast(DTYPES[f.kind])
            for r in f.rules
        ]
        value = pl.when(conds[0]).then(thens[0])
        for cond, then in zip(conds[1:], thens[1:]):
            value = value.when(cond).then(then)
        value = value.otherwise(pl.lit(None, DTYPES[f.kind]))
        refs = list(dict.fromkeys(n for r in f.rules for n, _ in r.equals))
        lf = lf.with_columns(value.alias(f.name))
        have.add(f.name)
        if all(not (r.equals or r.has or r.lacks or r.refund) for r in f.rules[-1:]):
            continue  # the last rule always matches (a constant): nothing to quarantine
        # Only blame the rules when their inputs were fine; otherwise the input's own error says it.
        inputs_ok = pl.all_horizontal([pl.col(f"__e_{n}").is_null() for n in refs if f"__e_{n}" in have] or [pl.lit(True)])
        err = pl.when(~pl.any_horizontal(conds) & inputs_ok).then(pl.lit(f"no {f.name} rule matches this value"))
        ref_field = layout.field(refs[0]) if refs else None
        report_srcs = ref_field.sources if ref_field is not None and ref_field.sources else ()
        lf = lf.with_columns(err.alias(f"__e_{f.name}"))
        have.add(f"__e_{f.name}")
        errors.append((f"__e_{f.name}", " / ".join(report_srcs) or f.name, tuple(slot[p] for p in report_srcs)))

    # record_id from the template, e.g. "{platform}/{order_id}".
    parts: list[pl.Expr] = []
    pos = 0
    for m in _TEMPLATE.finditer(layout.record_id):
        if m.start() > pos:
            parts.append(pl.lit(layout.record_id[pos:m.start()]))
        parts.append(pl.col(m.group(1)).cast(pl.String).fill_null(""))
        pos = m.end()
    if pos < len(layout.record_id):
        parts.append(pl.lit(layout.record_id[pos:]))
    lf = lf.with_columns(pl.concat_str(parts).alias("record_id"))

    out_cols = [
        (pl.col(name) if name in have else pl.lit(None)).cast(DTYPES[KIND_BY_SQL_TYPE[sql]]).alias(name)
        for name, sql in columns
    ]
    select_rows = [pl.col("record_id"), *out_cols, pl.col(ROW).alias("_row_number")]

    err_cols = [e for e, _, _ in errors]
    check_cols = [f"__e_check{i}" for i in range(len(layout.checks))]
    if check_cols and len(err_cols) > len(check_cols):
        # A record a check rejects (a WeCom/WeChat error response) is reported for that alone, not also
        # for every field an error response naturally lacks.
        failed = pl.any_horizontal([pl.col(c).is_not_null() for c in check_cols])
        lf = lf.with_columns(pl.when(failed).then(None).otherwise(pl.col(e)).alias(e) for e in err_cols if e not in check_cols)
    if not err_cols:
        return Transformed(lf.select(select_rows).collect(), pl.DataFrame(schema=QUARANTINE_SCHEMA), 0)
    # Collect only what leaves this function: intermediate text columns would triple peak memory.
    # Raw values for quarantine come from the pass-0 frame, which is row-aligned (nothing filters rows).
    bad = pl.any_horizontal([pl.col(e).is_not_null() for e in err_cols]).alias("__bad")
    out = lf.select(*select_rows, *[pl.col(e) for e in err_cols], bad).collect()
    mask = out["__bad"]
    if not mask.any():
        return Transformed(out.select(out.columns[: len(select_rows)]), pl.DataFrame(schema=QUARANTINE_SCHEMA), 0)

    flagged = pl.concat([out.filter(mask).select(err_cols), df.filter(mask)], how="horizontal")
    parts_q = [
        flagged.filter(pl.col(e).is_not_null()).select(
            pl.col(ROW).alias("row_number"),
            pl.lit(col_name, pl.String).alias("column_name"),
            (pl.coalesce([pl.col(r) for r in raw]) if raw else pl.lit(None, pl.String)).cast(pl.String).alias("raw_value"),
            pl.col(e).alias("reason"),
        )
        for e, col_name, raw in errors
    ]
    quarantine = pl.concat(parts_q).sort("row_number", maintain_order=True)
    rows = out.filter(~mask).select(out.columns[: len(select_rows)])
    return Transformed(rows, quarantine, int(flagged[ROW].n_unique()))
