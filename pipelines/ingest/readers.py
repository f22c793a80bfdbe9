"""From file bytes to a frame of strings, and the choice of layout.

Every reader returns the export's values as polars String columns named by the export column (tabular)
or by the dotted JSON path the layout asks for, plus ``__row`` (1-based data row / line number).
Typing happens later, in one vectorized pass (transform.py), so that CSV, XLSX and JSON share it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field

import polars as pl

from .config import Layout, split_json_path
from .decoding import DecodeError, decode_bytes

ROW = "__row"
MAX_RAW_VALUE = 2000  # a quarantined value is for a human to look at; a 5 MB line is not


class RejectFile(Exception):
    """The whole file cannot be loaded; the message says why and where."""


@dataclass
class ReadResult:
    layout: Layout
    frame: pl.DataFrame  # __row Int64 + one String column per input path
    encoding: str | None
    # Rows the reader itself could not turn into values: (row_number, column_name, raw_value, reason).
    problems: list[tuple[int, str | None, str | None, str]] = field(default_factory=list)


_NON_SPACE = re.compile(rb"\S")


def _has_content(data: bytes) -> bool:
    # Not `data.strip()`: that would copy a whole export just to test for emptiness.
    return _NON_SPACE.search(data) is not None


def _clip(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_RAW_VALUE:
        return value
    return value[:MAX_RAW_VALUE] + "…"


# ----------------------------------------------------------------------------------------------------
# tabular: CSV and XLSX


def clean_header(name: str) -> str:
    name = name.replace("\ufeff", "").strip()
    if name.startswith('="') and name.endswith('"'):
        name = name[2:-1].strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].strip()
    return name


def _dedupe_header(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            # Only the first of two same-named columns is readable by name; the rest stay visible but unused.
            out.append(f"{n}#{seen[n]}")
        else:
            seen[n] = 1
            out.append(n)
    return out


def _finish_tabular(df: pl.DataFrame) -> pl.DataFrame:
    df = df.rename(dict(zip(df.columns, _dedupe_header([clean_header(c) for c in df.columns]))))
    df = df.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))
    data_cols = [c for c in df.columns if c != ROW]
    if not data_cols:
        return df
    # Blank lines come back as all-null rows; they are not data, but they keep their place in the numbering.
    keep = df.select(pl.any_horizontal(pl.col(data_cols).is_not_null()).alias("k"))["k"]
    return df if keep.all() else df.filter(keep)


def _read_csv(utf8: bytes, layout: Layout) -> tuple[pl.DataFrame, list]:
    try:
        df = pl.read_csv(
            utf8,
            infer_schema=False,
            has_header=True,
            separator=layout.separator,
            quote_char=layout.quote_char,
            skip_rows=layout.skip_rows,
            truncate_ragged_lines=False,
            raise_if_empty=False,
        )
        return _finish_tabular(df), []
    except pl.exceptions.PolarsError:
        # Rare path: find the offending rows ourselves so they can be quarantined by number.
        return _read_csv_slow(utf8, layout)


def _read_csv_slow(utf8: bytes, layout: Layout) -> tuple[pl.DataFrame, list]:
    text = utf8.decode("utf-8")
    lines = io.StringIO(text, newline="")
    for _ in range(layout.skip_rows):
        lines.readline()
    reader = csv.reader(
        lines, delimiter=layout.separator, quotechar=layout.quote_char or '"',
        quoting=csv.QUOTE_MINIMAL if layout.quote_char else csv.QUOTE_NONE, strict=True,
    )
    try:
        header = next(reader, None)
        if header is None:
            return pl.DataFrame(), []
        width = len(header)
        rows: list[list[str | None]] = []
        numbers: list[int] = []
        problems = []
        for n, rec in enumerate(reader, start=1):
            if not rec or all(v == "" for v in rec):
                continue
            if len(rec) > width:
                # Usually an unquoted separator inside a value: every later value in the row is shifted.
                problems.append((n, None, _clip(layout.separator.join(rec)),
                                 f"row has {len(rec)} fields, the header has {width}"))
                continue
            rows.append([v if v != "" else None for v in rec] + [None] * (width - len(rec)))
            numbers.append(n)
    except csv.Error as e:
        raise RejectFile(f"malformed CSV at line {reader.line_num + layout.skip_rows}: {e}") from None
    names = _dedupe_header([clean_header(c) for c in header])
    columns = list(zip(*rows)) if rows else [[] for _ in names]
    df = pl.DataFrame({name: pl.Series(name, list(col), dtype=pl.String) for name, col in zip(names, columns)})
    df = df.with_columns(pl.Series(ROW, numbers, dtype=pl.Int64)).select(ROW, *names)
    return df, problems


def _read_xlsx(data: bytes, layout: Layout) -> pl.DataFrame:
    kwargs = {"sheet_name": layout.sheet} if layout.sheet else {"sheet_id": 1}
    try:
        df = pl.read_excel(
            io.BytesIO(data),
            engine="calamine",
            infer_schema_length=0,  # every cell as text; typing is ours
            read_options={"header_row": layout.skip_rows} if layout.skip_rows else None,
            drop_empty_rows=False,
            drop_empty_cols=False,
            raise_if_empty=False,
            **kwargs,
        )
    except Exception as e:  # fastexcel raises its own hierarchy
        raise RejectFile(f"cannot read spreadsheet: {type(e).__name__}: {e}") from None
    df = df.with_columns(pl.col(c).cast(pl.String) for c in df.columns)
    # calamine turns empty cells into "" when reading as text; make them null like CSV does.
    df = df.with_columns(pl.when(pl.col(c) != "").then(pl.col(c)).alias(c) for c in df.columns)
    return _finish_tabular(df)


def choose_tabular_layout(header: list[str], candidates: list[Layout], folder: str) -> Layout:
    present = set(header)
    scored = []
    for lay in candidates:
        missing = [c for c in lay.match_columns if c not in present]
        scored.append((len(missing), -len(lay.match_columns), lay.name, lay, missing))
    matches = [s for s in scored if s[0] == 0]
    if matches:
        # The most specific layout wins: one whose columns are a superset of another's is the better fit.
        return min(matches, key=lambda s: s[1])[3]
    scored.sort(key=lambda s: (s[0], s[1]))
    closest = "; ".join(f"{name} (missing {', '.join(missing)})" for _, _, name, _, missing in scored[:3])
    shown = ", ".join(header[:30]) + (" …" if len(header) > 30 else "")
    raise RejectFile(
        f"header matches no layout allowed in {folder}/: closest {closest}. File header: {shown or '(none)'}"
    )


def read_tabular(data: bytes, suffix: str, candidates: list[Layout], folder: str) -> ReadResult:
    if suffix in (".xlsx", ".xlsm", ".xls"):
        dialects = {(lay.sheet, lay.skip_rows): lay for lay in candidates}
        encoding = None
    else:
        hints = tuple(dict.fromkeys(lay.encoding for lay in candidates if lay.encoding))
        try:
            decoded = decode_bytes(data, hints)
        except DecodeError as e:
            raise RejectFile(f"cannot decode: {e}") from None
        data, encoding = decoded.data, decoded.encoding
        dialects = {(lay.separator, lay.quote_char, lay.skip_rows): lay for lay in candidates}
    if not _has_content(data):
        raise RejectFile("file is empty (no header, no rows)")

    # Layouts sharing a dialect share one parse; the header then picks among them.
    last_error = None
    for key, first in dialects.items():
        group = [lay for lay in candidates if _dialect(lay, suffix) == key]
        if suffix in (".xlsx", ".xlsm", ".xls"):
            frame, problems = _read_xlsx(data, first), []
        else:
            frame, problems = _read_csv(data, first)
        header = [c for c in frame.columns if c != ROW]
        try:
            layout = choose_tabular_layout(header, group, folder)
        except RejectFile as e:
            last_error = e
            continue
        return ReadResult(layout, frame, encoding, problems)
    assert last_error is not None
    raise last_error


def _dialect(lay: Layout, suffix: str) -> tuple:
    if suffix in (".xlsx", ".xlsm", ".xls"):
        return (lay.sheet, lay.skip_rows)
    return (lay.separator, lay.quote_char, lay.skip_rows)


# ----------------------------------------------------------------------------------------------------
# JSON lines and JSON documents


def json_schema(layout: Layout) -> tuple[dict[str, pl.DataType], str | None]:
    """polars schema reading every leaf the layout needs as String, and the list column to explode."""
    tree: dict = {}
    exploded = None
    for path in layout.input_paths:
        node = tree
        segs = split_json_path(path)
        for i, (key, is_list) in enumerate(segs):
            if i == len(segs) - 1:
                node[key] = None
            else:
                if is_list:
                    exploded = key if i == 0 else exploded
                entry = node.setdefault(key, {"__list": is_list, "__children": {}})
                node = entry["__children"]

    def to_dtype(entry) -> pl.DataType:
        if entry is None:
            # A String leaf receives scalars as text and arrays/objects as their JSON text.
            return pl.String
        struct = pl.Struct({k: to_dtype(v) for k, v in entry["__children"].items()})
        return pl.List(struct) if entry["__list"] else struct

    return {k: to_dtype(v) for k, v in tree.items()}, exploded


def _path_expr(path: str) -> pl.Expr:
    segs = split_json_path(path)
    expr = pl.col(segs[0][0])
    for key, _ in segs[1:]:
        expr = expr.struct.field(key)
    return expr.alias(path)


def _parse_ndjson(lines: list[bytes], schema: dict) -> pl.DataFrame:
    df = pl.read_ndjson(io.BytesIO(b"\n".join(lines)), schema=schema)
    if df.height != len(lines):
        raise ValueError(f"{len(lines)} lines gave {df.height} records")
    return df


def _parse_with_quarantine(
    lines: list[bytes], numbers: list[int], schema: dict
) -> tuple[pl.DataFrame, list[int], list[tuple[int, str | None, str | None, str]]]:
    try:
        return _parse_ndjson(lines, schema), numbers, []
    except Exception:
        pass
    # Rare path: a malformed line must cost only that line. Find them with the json module, then isolate
    # any remaining shape mismatch (e.g. a string where an object is expected) by bisection.
    problems = []
    good_lines, good_numbers = [], []
    for n, line in zip(numbers, lines):
        text = line.decode("utf-8")
        try:
            obj = json.loads(text)
        except ValueError as e:
            where = f" at column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
            problems.append((n, None, _clip(text), f"malformed JSON: {getattr(e, 'msg', e)}{where}"))
            continue
        if not isinstance(obj, dict):
            problems.append((n, None, _clip(text), f"not a JSON object (got {type(obj).__name__})"))
            continue
        good_lines.append(line)
        good_numbers.append(n)

    frames: list[pl.DataFrame] = []
    kept: list[int] = []

    def bisect(ls: list[bytes], ns: list[int]) -> None:
        if not ls:
            return
        try:
            frames.append(_parse_ndjson(ls, schema))
            kept.extend(ns)
            return
        except Exception as e:
            if len(ls) == 1:
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                problems.append((ns[0], None, _clip(ls[0].decode("utf-8")), f"unexpected JSON structure: {reason}"))
                return
        mid = len(ls) // 2
        bisect(ls[:mid], ns[:mid])
        bisect(ls[mid:], ns[mid:])

    bisect(good_lines, good_numbers)
    df = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=schema)
    return df, kept, sorted(problems)


def _frame_for_layout(lines: list[bytes], numbers: list[int], layout: Layout):
    schema, exploded = json_schema(layout)
    df, kept, problems = _parse_with_quarantine(lines, numbers, schema)
    df = df.with_columns(pl.Series(ROW, kept, dtype=pl.Int64))
    if exploded is not None:
        # A contact with an empty follow_user keeps one row (with empty staff fields) instead of vanishing.
        df = df.explode(exploded, empty_as_null=True, keep_nulls=True)
    frame = df.select(ROW, *[_path_expr(p) for p in layout.input_paths])
    return frame, problems


def _missing_required(frame: pl.DataFrame, layout: Layout) -> list[str]:
    if frame.height == 0:
        return []
    present = frame.select(pl.col(c).is_not_null().any() for c in layout.match_columns).row(0)
    return [c for c, ok in zip(layout.match_columns, present) if not ok]


def _json_lines(utf8: bytes) -> tuple[list[bytes], list[int]]:
    lines = pl.Series("l", utf8.split(b"\n"), dtype=pl.Binary)
    frame = pl.DataFrame({"l": lines}).with_row_index(ROW, offset=1)
    frame = frame.filter(pl.col("l").cast(pl.String).str.strip_chars() != "")
    return frame["l"].to_list(), frame[ROW].cast(pl.Int64).to_list()


def _json_records(utf8: bytes, records_path: str | None) -> tuple[list[bytes], list[int], list]:
    try:
        doc = json.loads(utf8)
    except ValueError as e:
        raise RejectFile(f"malformed JSON document: {e}") from None
    node = doc
    for key in (records_path or "").split(".") if records_path else []:
        if not isinstance(node, dict) or key not in node:
            hint = ""
            if isinstance(doc, dict) and "errcode" in doc and doc.get("errcode") not in (0, "0"):
                hint = f" (the document is an error response: errcode={doc.get('errcode')} {doc.get('errmsg', '')})"
            raise RejectFile(f"no `{records_path}` list in the document{hint}")
        node = node[key]
    if not isinstance(node, list):
        raise RejectFile(f"`{records_path or '(document)'}` is not a list of records")
    lines, numbers, problems = [], [], []
    for i, rec in enumerate(node, start=1):
        text = json.dumps(rec, ensure_ascii=False)
        if isinstance(rec, dict):
            lines.append(text.encode("utf-8"))
            numbers.append(i)
        else:
            problems.append((i, None, _clip(text), f"not a JSON object (got {type(rec).__name__})"))
    return lines, numbers, problems


def read_json(data: bytes, suffix: str, candidates: list[Layout], folder: str) -> ReadResult:
    hints = tuple(dict.fromkeys(lay.encoding for lay in candidates if lay.encoding))
    try:
        decoded = decode_bytes(data, hints)
    except DecodeError as e:
        raise RejectFile(f"cannot decode: {e}") from None
    if not _has_content(decoded.data):
        raise RejectFile("file is empty (no records)")

    attempts = []
    for layout in candidates:
        if layout.format == "json":
            try:
                lines, numbers, pre = _json_records(decoded.data, layout.records_path)
            except RejectFile as e:
                attempts.append((10**6, layout.name, str(e)))
                continue
        else:
            lines, numbers = _json_lines(decoded.data)
            pre = []
        frame, problems = _frame_for_layout(lines, numbers, layout)
        missing = _missing_required(frame, layout)
        if frame.height and not missing:
            return ReadResult(layout, frame, decoded.encoding, sorted(pre + problems))
        if not frame.height and not missing and not problems and not pre:
            return ReadResult(layout, frame, decoded.encoding, [])
        if not frame.height:
            missing = list(layout.match_columns) if not problems else []
            what = f"no parseable record ({len(problems) + len(pre)} unreadable)" if problems or pre else ""
            attempts.append((len(missing), layout.name, what or f"missing {', '.join(missing)}"))
        else:
            attempts.append((len(missing), layout.name, f"no record has {', '.join(missing)}"))
    attempts.sort()
    closest = "; ".join(f"{name} ({why})" for _, name, why in attempts[:3])
    raise RejectFile(f"records match no layout allowed in {folder}/: closest {closest}")
