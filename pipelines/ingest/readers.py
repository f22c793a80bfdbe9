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
from typing import Callable, Iterator

import polars as pl

from .config import Layout, split_json_path
from .decoding import DecodeError, TextStream

ROW = "__row"
MAX_RAW_VALUE = 2000  # a quarantined value is for a human to look at; a 5 MB line is not


class RejectFile(Exception):
    """The whole file cannot be loaded; the message says why and where."""


@dataclass
class Batch:
    frame: pl.DataFrame  # __row Int64 + one String column per input path
    # Rows the reader itself could not turn into values: (row_number, column_name, raw_value, reason).
    problems: list[tuple[int, str | None, str | None, str]] = field(default_factory=list)


@dataclass
class ReadResult:
    """The layout a file matched, and its rows as a stream of bounded batches.

    Only the first batch is parsed up front (it decides the layout); the rest are parsed as ``batches``
    is iterated, so a 4 GB export never sits in memory whole. Iterating may still raise ``RejectFile``
    (a bad byte or a broken quote deep in the file): the caller loads a file in one transaction.
    """

    layout: Layout
    encoding: str | None
    batches: Iterator[Batch]


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


def _finish_tabular(df: pl.DataFrame, offset: int = 0) -> tuple[pl.DataFrame, int]:
    """Clean names, number rows from ``offset + 1``, drop blank lines; also the number of records seen."""
    df = df.rename(dict(zip(df.columns, _dedupe_header([clean_header(c) for c in df.columns]))))
    seen = df.height
    df = df.with_row_index(ROW, offset=offset + 1).with_columns(pl.col(ROW).cast(pl.Int64))
    data_cols = [c for c in df.columns if c != ROW]
    if not data_cols:
        return df, seen
    # Blank lines come back as all-null rows; they are not data, but they keep their place in the numbering.
    keep = df.select(pl.any_horizontal(pl.col(data_cols).is_not_null()).alias("k"))["k"]
    return (df if keep.all() else df.filter(keep)), seen


def _read_csv(utf8: bytes, layout: Layout, skip_rows: int, offset: int) -> tuple[pl.DataFrame, list, int]:
    try:
        df = pl.read_csv(
            utf8,
            infer_schema=False,
            has_header=True,
            separator=layout.separator,
            quote_char=layout.quote_char,
            skip_rows=skip_rows,
            truncate_ragged_lines=False,
            raise_if_empty=False,
        )
        df, seen = _finish_tabular(df, offset)
        return df, [], seen
    except pl.exceptions.PolarsError:
        # Rare path: find the offending rows ourselves so they can be quarantined by number.
        return _read_csv_slow(utf8, layout, skip_rows, offset)


def _read_csv_slow(utf8: bytes, layout: Layout, skip_rows: int, offset: int) -> tuple[pl.DataFrame, list, int]:
    text = utf8.decode("utf-8")
    lines = io.StringIO(text, newline="")
    for _ in range(skip_rows):
        lines.readline()
    reader = csv.reader(
        lines, delimiter=layout.separator, quotechar=layout.quote_char or '"',
        quoting=csv.QUOTE_MINIMAL if layout.quote_char else csv.QUOTE_NONE, strict=True,
    )
    n = 0
    try:
        header = next(reader, None)
        if header is None:
            return pl.DataFrame(), [], 0
        width = len(header)
        rows: list[list[str | None]] = []
        numbers: list[int] = []
        problems = []
        for n, rec in enumerate(reader, start=1):
            if not rec or all(v == "" for v in rec):
                continue
            if len(rec) > width:
                # Usually an unquoted separator inside a value: every later value in the row is shifted.
                problems.append((offset + n, None, _clip(layout.separator.join(rec)),
                                 f"row has {len(rec)} fields, the header has {width}"))
                continue
            rows.append([v if v != "" else None for v in rec] + [None] * (width - len(rec)))
            numbers.append(offset + n)
    except csv.Error as e:
        raise RejectFile(f"malformed CSV at data row {offset + n + 1}: {e}") from None
    names = _dedupe_header([clean_header(c) for c in header])
    columns = list(zip(*rows)) if rows else [[] for _ in names]
    df = pl.DataFrame({name: pl.Series(name, list(col), dtype=pl.String) for name, col in zip(names, columns)})
    df = df.with_columns(pl.Series(ROW, numbers, dtype=pl.Int64)).select(ROW, *names)
    return df, problems, n


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
    return _finish_tabular(df)[0]


def _missing_groups(groups: tuple[tuple[str, ...], ...], present: set[str]) -> list[str]:
    return [" or ".join(g) for g in groups if not any(c in present for c in g)]


_REPEATED = re.compile(r"^(.*)(?:#\d+|_duplicated_\d+)$")


def choose_tabular_layout(header: list[str], candidates: list[Layout], folder: str) -> Layout:
    present = set(header)
    scored = []
    for lay in candidates:
        missing = _missing_groups(lay.match_groups, present)
        scored.append((len(missing), -len(lay.match_groups), lay.name, lay, missing))
    matches = [s for s in scored if s[0] == 0]
    if matches:
        # The most specific layout wins: one whose columns are a superset of another's is the better fit.
        chosen = min(matches, key=lambda s: (s[1], s[2]))[3]
        # Two columns of the same name that the layout reads: which one holds the openid (or the amount)
        # cannot be known, and guessing would load the wrong values under a valid-looking row.
        used = set(chosen.input_paths)
        # polars names a repeated column `x_duplicated_0`, the csv-module path `x#2`
        twice = sorted({m.group(1) for m in map(_REPEATED.match, header) if m and m.group(1) in used})
        if twice:
            raise RejectFile(f"column {', '.join(twice)} appears more than once in the header: ambiguous")
        return chosen
    scored.sort(key=lambda s: (s[0], s[1]))
    closest = "; ".join(f"{name} (missing {', '.join(missing)})" for _, _, name, _, missing in scored[:3])
    shown = ", ".join(header[:30]) + (" …" if len(header) > 30 else "")
    raise RejectFile(
        f"header matches no layout allowed in {folder}/: closest {closest}. File header: {shown or '(none)'}"
    )


def _text_stream(open_stream: Callable, candidates: list[Layout], block_bytes: int | None) -> TextStream:
    hints = tuple(dict.fromkeys(lay.encoding for lay in candidates if lay.encoding))
    try:
        return TextStream(open_stream, hints, **({"block_bytes": block_bytes} if block_bytes else {}))
    except DecodeError as e:
        raise RejectFile(f"cannot decode: {e}") from None


def _guarded(blocks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from blocks
    except DecodeError as e:
        raise RejectFile(f"cannot decode: {e}") from None
    except (OSError, EOFError) as e:  # a truncated or corrupt .gz shows up only when its end is read
        raise RejectFile(f"cannot read: {type(e).__name__}: {e}") from None


def _csv_blocks(blocks: Iterator[bytes], quote: bytes | None) -> Iterator[bytes]:
    """Re-cut newline-ended blocks so that no cut falls inside a quoted value (which may hold newlines).

    In RFC 4180 CSV a quote inside a quoted value is doubled, so a position is outside quotes exactly when
    the number of quote characters before it is even.
    """
    carry = b""
    for block in blocks:
        data = carry + block if carry else block
        if quote is None:
            yield data
            carry = b""
            continue
        cut = len(data) if data.endswith(b"\n") else data.rfind(b"\n") + 1
        quotes = data.count(quote, 0, cut)
        while cut > 0 and quotes % 2:
            prev = data.rfind(b"\n", 0, cut - 1) + 1
            quotes -= data.count(quote, prev, cut)
            cut = prev
        if cut == 0:
            carry = data  # one value spans the whole block: read on
            continue
        carry = data[cut:]
        yield data[:cut]
    if carry:
        yield carry


def _header_line(first: bytes, skip_rows: int) -> bytes:
    """The raw header line of the first block, to put in front of every later block."""
    pos = 0
    for _ in range(skip_rows + 1):
        nl = first.find(b"\n", pos)
        if nl < 0:
            return first[pos:] + b"\n" if _ == skip_rows else b""
        start, pos = pos, nl + 1
    return first[start:pos]


def read_tabular(open_stream: Callable, suffix: str, candidates: list[Layout], folder: str,
                 chunk_rows: int = 250_000, block_bytes: int | None = None) -> ReadResult:
    """CSV in bounded blocks (decoded on the fly), or an XLSX sheet (read whole, handed out in chunks)."""
    if suffix in (".xlsx", ".xlsm", ".xls"):
        with open_stream() as fh:
            data = fh.read()
        if not data:
            raise RejectFile("file is empty (no header, no rows)")
        dialects = {(lay.sheet, lay.skip_rows): lay for lay in candidates}
        last_error = None
        for key, first_lay in dialects.items():
            group = [lay for lay in candidates if _dialect(lay, suffix) == key]
            frame = _read_xlsx(data, first_lay)
            try:
                layout = choose_tabular_layout([c for c in frame.columns if c != ROW], group, folder)
            except RejectFile as e:
                last_error = e
                continue
            del data
            batches = (Batch(frame.slice(o, chunk_rows)) for o in range(0, max(frame.height, 1), chunk_rows))
            return ReadResult(layout, None, batches)
        assert last_error is not None
        raise last_error

    text = _text_stream(open_stream, candidates, block_bytes)
    # Layouts sharing a dialect share one parse; the header then picks among them.
    dialects = {(lay.separator, lay.quote_char, lay.skip_rows): lay for lay in candidates}
    last_error = None
    for key, first_lay in dialects.items():
        group = [lay for lay in candidates if _dialect(lay, suffix) == key]
        quote = first_lay.quote_char.encode() if first_lay.quote_char else None
        blocks = _csv_blocks(_guarded(text.blocks()), quote)
        first = next(blocks, b"")
        if not _has_content(first):
            raise RejectFile("file is empty (no header, no rows)")
        frame, problems, seen = _read_csv(first, first_lay, first_lay.skip_rows, 0)
        try:
            layout = choose_tabular_layout([c for c in frame.columns if c != ROW], group, folder)
        except RejectFile as e:
            last_error = e
            blocks.close()
            continue
        header = _header_line(first, layout.skip_rows)
        return ReadResult(layout, text.encoding, _csv_batches(frame, problems, seen, blocks, header, layout))
    assert last_error is not None
    raise last_error


def _csv_batches(frame, problems, seen, blocks, header: bytes, layout: Layout) -> Iterator[Batch]:
    yield Batch(frame, problems)
    del frame, problems
    offset = seen
    for block in blocks:
        if not _has_content(block):
            offset += block.count(b"\n")  # trailing blank lines: nothing to number
            continue
        frame, problems, seen = _read_csv(header + block, layout, 0, offset)
        offset += seen
        yield Batch(frame, problems)


def _dialect(lay: Layout, suffix: str) -> tuple:
    if suffix in (".xlsx", ".xlsm", ".xls"):
        return (lay.sheet, lay.skip_rows)
    return (lay.separator, lay.quote_char, lay.skip_rows)


# ----------------------------------------------------------------------------------------------------
# JSON lines and JSON documents


def _exploded_path(layout: Layout) -> list[tuple[str, bool]] | None:
    """Segments up to and including the one list the layout explodes (``[("data", False), ("openid", True)]``)."""
    for path in layout.input_paths:
        segs = split_json_path(path)
        for i, (_, is_list) in enumerate(segs):
            if is_list:
                return segs[: i + 1]
    return None


def json_schema(layout: Layout) -> dict[str, pl.DataType]:
    """polars schema reading every leaf the layout needs as String (lists to explode as lists)."""
    tree: dict = {}
    for path in layout.input_paths:
        node = tree
        segs = split_json_path(path)
        for i, (key, is_list) in enumerate(segs):
            if i == len(segs) - 1:
                # `data.openid[]`: a list of plain values; anything else a String leaf.
                node[key] = {"__list": True, "__children": None} if is_list else None
            else:
                entry = node.setdefault(key, {"__list": is_list, "__children": {}})
                node = entry["__children"]

    def to_dtype(entry) -> pl.DataType:
        if entry is None:
            # A String leaf receives scalars as text and arrays/objects as their JSON text.
            return pl.String
        if entry["__children"] is None:
            return pl.List(pl.String)
        struct = pl.Struct({k: to_dtype(v) for k, v in entry["__children"].items()})
        return pl.List(struct) if entry["__list"] else struct

    return {k: to_dtype(v) for k, v in tree.items()}


EXPLODED = "__x"
HEAD_BYTES = 256 * 1024


def _path_expr(path: str, exploded: list[tuple[str, bool]] | None) -> pl.Expr:
    segs = split_json_path(path)
    if exploded is not None and segs[: len(exploded)] == exploded:
        expr, rest = pl.col(EXPLODED), segs[len(exploded):]
    else:
        expr, rest = pl.col(segs[0][0]), segs[1:]
    for key, _ in rest:
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
        except RecursionError:
            problems.append((n, None, _clip(text), "malformed JSON: nested too deeply"))
            continue
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


def _explode_records(df: pl.DataFrame, layout: Layout, exploded: list[tuple[str, bool]]) -> pl.DataFrame:
    """One row per element of the exploded list, in column EXPLODED."""
    to_list = pl.col(exploded[0][0])
    for key, _ in exploded[1:]:
        to_list = to_list.struct.field(key)
    df = df.with_columns(to_list.alias(EXPLODED))
    empty = pl.col(EXPLODED).list.len().fill_null(0) == 0
    if layout.empty_list == "skip":
        # A record with nothing in its list (the last user/get page, a contact list that ran out) yields
        # no row, unless a check says the record is an error response: that must stay visible.
        checks_ok = [_path_expr(c.source, None).is_null() | _path_expr(c.source, None).is_in(list(c.allowed))
                     for c in layout.checks if not c.source.startswith(exploded[0][0] + "[")]
        keep = ~empty
        if checks_ok:
            keep = keep | ~pl.all_horizontal(checks_ok)
        df = df.filter(keep)
    # A WeCom contact with an empty follow_user keeps one row (with empty staff fields) instead of vanishing.
    return df.explode(EXPLODED, empty_as_null=True, keep_nulls=True)


def _element_text_schemas(schema: dict, exploded: list[tuple[str, bool]]) -> tuple[dict, dict] | None:
    """(``schema`` with the exploded list's elements read as JSON text, the schema of one element), or None
    when the list holds plain values."""
    found: list[dict] = []

    def swap(fields: dict, segs: list[tuple[str, bool]]) -> dict | None:
        key, dtype = segs[0][0], fields[segs[0][0]]
        if len(segs) == 1:
            if not (isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct)):
                return None
            found.append(dict(dtype.inner.to_schema()))
            return {**fields, key: pl.List(pl.String)}
        inner = swap(dict(dtype.to_schema()), segs[1:])
        return None if inner is None else {**fields, key: pl.Struct(inner)}

    outer = swap(dict(schema), exploded)
    return None if outer is None else (outer, found[0])


# A string value starting with "{" (written `"{` or `"\u007b`): its text could pass for an object's.
_STRING_LIKE_OBJECT = re.compile(rb'"(?:\{|\\u007[bB])')


def _exploded_via_element_text(lines: list[bytes], numbers: list[int], layout: Layout,
                               exploded: list[tuple[str, bool]], schema: dict) -> pl.DataFrame | None:
    """The exploded frame, read in two cheap passes instead of one costly one; None when a record needs the
    general path (a malformed line, a shape mismatch, a value that could fool the second pass).

    polars builds a list of structs from JSON several times slower than a struct or a string (a 16 MB block
    of WeCom contacts: 1.7 s against 0.6 s). So the list's elements are first read as their JSON text, and
    after the explode those texts, polars' own serialization of each object, are read as records of their
    own: the same values the direct parse gives. That holds only when every element is an object or null:
    an element of another type fails the direct parse (its line is quarantined), but would come through here
    as text, which is why this path checks that every text starts with "{" and that no string in the block
    can start with "{".
    """
    schemas = _element_text_schemas(schema, exploded)
    if schemas is None:
        return None
    outer, element = schemas
    if any(_STRING_LIKE_OBJECT.search(line) for line in lines):
        return None
    try:
        df = _parse_ndjson(lines, outer)  # raises on a malformed line or a record count that does not match
    except Exception:
        return None
    df = _explode_records(df.with_columns(pl.Series(ROW, numbers, dtype=pl.Int64)), layout, exploded)
    texts = df.get_column(EXPLODED)
    if df.height == 0 or not texts.str.starts_with("{").fill_null(True).all():
        return None
    # A negative zero (-0.0, -1e-400) reads as "-0" but is written -0, which reads back as the integer 0.
    if texts.str.contains(r"-0(?:[^0-9.]|$)").any():
        return None
    # A null element (or an empty list's one row) reads as an object without fields: every path is null.
    joined = texts.fill_null("{}").str.join("\n").item().encode()
    try:
        elements = pl.read_ndjson(io.BytesIO(joined), schema=element)
    except Exception:
        return None
    if elements.height != df.height:
        return None
    return df.with_columns(elements.to_struct(EXPLODED))


def _frame_for_layout(lines: list[bytes], numbers: list[int], layout: Layout):
    schema = json_schema(layout)
    exploded = _exploded_path(layout)
    if exploded is not None:
        df = _exploded_via_element_text(lines, numbers, layout, exploded, schema)
        if df is not None:
            return df.select(ROW, *[_path_expr(p, exploded) for p in layout.input_paths]), []
    df, kept, problems = _parse_with_quarantine(lines, numbers, schema)
    df = df.with_columns(pl.Series(ROW, kept, dtype=pl.Int64))
    if exploded is not None:
        df = _explode_records(df, layout, exploded)
    frame = df.select(ROW, *[_path_expr(p, exploded) for p in layout.input_paths])
    return frame, problems


def _missing_required(frame: pl.DataFrame, layout: Layout) -> list[str]:
    if frame.height == 0:
        return []
    present = frame.select(pl.col(c).is_not_null().any() for c in layout.match_columns).row(0)
    have = {c for c, ok in zip(layout.match_columns, present) if ok}
    return _missing_groups(layout.match_groups, have)


def _json_lines(utf8: bytes, offset: int = 0) -> tuple[list[bytes], list[int]]:
    lines = pl.Series("l", utf8.split(b"\n"), dtype=pl.Binary)
    frame = pl.DataFrame({"l": lines}).with_row_index(ROW, offset=offset + 1)
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
    if records_path is None and isinstance(node, dict):
        node = [node]  # one API response saved as a file (a user/get page, an externalcontact/get response)
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


def _choose_json_layout(candidates: list[Layout], records, folder: str):
    """(layout, frame, problems) of the first layout whose records carry its required paths.

    ``records(layout)`` gives (lines, numbers, reader problems) or raises RejectFile. A layout under which
    the records yield no row at all (an empty last page) is taken only when no layout yields rows.
    """
    attempts = []
    empty = None
    partial = False
    for layout in candidates:
        try:
            lines, numbers, pre = records(layout)
        except RejectFile as e:
            attempts.append((10**6, layout.name, str(e)))
            continue
        frame, problems = _frame_for_layout(lines, numbers, layout)
        missing = _missing_required(frame, layout)
        if frame.height and not missing:
            return layout, frame, sorted(pre + problems)
        if not frame.height and not missing and not problems and not pre:
            empty = empty or (layout, frame, [])
            continue
        if frame.height and len(missing) < len(layout.match_groups):
            partial = True  # some records carry some of this layout's ids: the file is not just empty pages
        if not frame.height:
            missing = [" or ".join(g) for g in layout.match_groups] if not problems else []
            what = f"no parseable record ({len(problems) + len(pre)} unreadable)" if problems or pre else ""
            attempts.append((len(missing), layout.name, what or f"missing {', '.join(missing)}"))
        else:
            attempts.append((len(missing), layout.name, f"no record has {', '.join(missing)}"))
    if empty is not None and not partial:
        return empty
    attempts.sort()
    closest = "; ".join(f"{name} ({why})" for _, name, why in attempts[:3])
    raise RejectFile(f"records match no layout allowed in {folder}/: closest {closest}")


def read_json(open_stream: Callable, suffix: str, candidates: list[Layout], folder: str,
              block_bytes: int | None = None) -> ReadResult:
    """JSON lines in bounded blocks of whole lines; a .json document (one API page) whole."""
    text = _text_stream(open_stream, candidates, block_bytes)
    blocks = _guarded(text.blocks())
    if suffix == ".json":
        data = b"".join(blocks)
        if not _has_content(data):
            raise RejectFile("file is empty (no records)")
        layout, frame, problems = _choose_json_layout(
            [lay for lay in candidates if lay.format == "json"],
            lambda lay: _json_records(data, lay.records_path), folder,
        )
        return ReadResult(layout, text.encoding, iter([Batch(frame, problems)]))

    # The layout is chosen on the first HEAD_BYTES of records (or the whole file if smaller), whatever the
    # block size: a few lines can be ambiguous (a WeCom contact nobody follows yet looks like no layout).
    offset = 0
    head: list[bytes] = []
    size = 0
    for block in blocks:
        if not head and not _has_content(block):
            offset += block.count(b"\n")
            continue
        head.append(block)
        size += len(block)
        if size >= HEAD_BYTES:
            break
    first = b"".join(head)
    del head
    if not _has_content(first):
        raise RejectFile("file is empty (no records)")
    lines, numbers = _json_lines(first, offset)
    layout, frame, problems = _choose_json_layout(
        [lay for lay in candidates if lay.format == "jsonl"], lambda lay: (lines, numbers, []), folder,
    )
    del lines, numbers
    offset += first.count(b"\n")

    def batches(frame=frame, problems=problems, offset=offset):
        yield Batch(frame, problems)
        del frame, problems
        for block in blocks:
            lines, numbers = _json_lines(block, offset)
            offset += block.count(b"\n")
            if lines:
                yield Batch(*_frame_for_layout(lines, numbers, layout))

    return ReadResult(layout, text.encoding, batches())
