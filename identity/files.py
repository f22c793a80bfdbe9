"""The CLI's input files (observations, predicted and truth maps): CSV, gzipped CSV, Parquet or Excel (the
first sheet).

CSV cells are read as text (record ids such as `000123` must survive). A CSV may be UTF-8 (with or without a
byte-order mark, as Excel writes it) or GB18030 (GBK: what Excel and Taobao write on Chinese Windows). A file
that cannot be read says why, with its name and the line where the problem is.

The pipeline's exports go through `pipelines/ingest/decoding.py` instead, which streams files of any size and
detects more encodings; identity cannot import it (the pipeline depends on identity, not the reverse), and a
contract file written by a program needs less.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import polars as pl


def read_table(path: str | Path) -> pl.DataFrame:
    """The file at `path` as a DataFrame (CSV columns as text); ValueError naming the file and line if it cannot
    be read, FileNotFoundError if it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() == ".parquet":
        try:
            return pl.read_parquet(path)
        except pl.exceptions.PolarsError as error:
            raise ValueError(f"{path}: not a readable Parquet file ({_first_line(error)})") from None
    if path.suffix.lower() in (".xlsx", ".xls"):
        try:
            # every cell as text, as from a CSV (a phone typed as a number is then its digits)
            return pl.read_excel(path, infer_schema_length=0)
        except Exception as error:  # noqa: BLE001 - fastexcel's errors share no base class with polars'
            raise ValueError(f"{path}: not a readable Excel workbook ({_first_line(error)})") from None
    try:
        # polars reads the file itself when it is well-formed UTF-8: nothing is copied on the way
        return _read_csv(path)
    except (pl.exceptions.PolarsError, OSError):
        pass  # not UTF-8, empty, not well-formed, or a gzip file cut short: found out and told below
    text = _utf8(_bytes(path), path)
    try:
        return _read_csv(io.BytesIO(text))
    except pl.exceptions.NoDataError:
        raise ValueError(f"{path}: empty file (a CSV needs at least its header row)") from None
    except pl.exceptions.PolarsError as error:
        raise ValueError(f"{path}: {csv_problem(text) or _first_line(error)}") from None


def unread_sheets(path: str | Path) -> list[str]:
    """The sheets of an Excel workbook that `read_table` leaves unread (all but the first); none for other files.
    An export of more rows than a sheet holds (1,048,576) goes on in a second sheet."""
    if Path(path).suffix.lower() not in (".xlsx", ".xls"):
        return []
    import fastexcel

    try:
        return list(fastexcel.read_excel(str(path)).sheet_names[1:])
    except Exception:  # noqa: BLE001 - an unreadable workbook is read_table's to report
        return []


def _read_csv(source) -> pl.DataFrame:
    return pl.read_csv(source, infer_schema=False)


def _bytes(path: Path) -> bytes:
    with open_bytes(path) as handle:
        try:
            return handle.read()
        except (OSError, EOFError) as error:
            if not isinstance(handle, gzip.GzipFile):
                raise
            raise ValueError(f"{path}: not a readable gzip file ({error})") from None


def _utf8(data: bytes, path: Path) -> bytes:
    """`data` as UTF-8 without a byte-order mark: as it is, or decoded strictly from GB18030."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        _decode(data, "utf-8", keep=False)
        return data
    except UnicodeDecodeError as error:
        not_utf8 = _position(io.BytesIO(data), error.start)
        # Chinese text in UTF-8 before the first bad byte: a damaged UTF-8 file or one with a part in another
        # encoding. Read as GB18030 it would not fail, but turn that text into other characters (会员 -> 浼氬憳).
        # GB18030 text can read as UTF-8 for a few characters too (of 50,000 random 40-character GB2312 texts,
        # 965 read as 2 UTF-8 characters before failing, 137 as 3, 24 as 4, 2 as 5, none as more), hence 8.
        if _multibyte_characters(data[: error.start]) >= 8:
            raise ValueError(
                f"{path}: UTF-8 with Chinese text up to {not_utf8}, then not: a damaged file, or parts in two "
                "encodings; save it again as UTF-8"
            ) from None
    try:
        return _decode(data, "gb18030", keep=True)
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: neither UTF-8 ({not_utf8}) nor GB18030 ({_position(io.BytesIO(data), error.start)}); "
            "save it as UTF-8"
        ) from None


_UTF8_LEADS = bytes(range(0xC2, 0xF5))


def _multibyte_characters(utf8: bytes) -> int:
    """Characters of more than one byte in valid UTF-8: its lead bytes, counted in one pass."""
    return len(utf8) - len(utf8.translate(None, delete=_UTF8_LEADS))


def _decode(data: bytes, encoding: str, keep: bool, step: int = 8 << 20) -> bytes:
    """`data` decoded strictly, a slice at a time, and re-encoded as UTF-8 when `keep`; UnicodeDecodeError with the
    offset in `data` of the first bad byte."""
    view = memoryview(data)
    try:
        text = _decoded((view[start:start + step] for start in range(0, len(data), step)), encoding)
        if not keep:
            for _ in text:
                pass
            return b""
        return b"".join(piece.encode("utf-8") for piece in text)
    except _BadByte as bad:
        raise UnicodeDecodeError(encoding, data, bad.offset, bad.offset + 1, bad.reason) from None


class _BadByte(Exception):
    def __init__(self, offset: int, reason: str):
        self.offset, self.reason = offset, reason


def _decoded(slices: Iterable[bytes], encoding: str) -> Iterator[str]:
    """The text of `slices`, consecutive pieces of one byte stream, decoded strictly a piece at a time (a whole file
    as one Python str takes 2-4 times its size); _BadByte with the offset in the stream of the first byte that
    does not decode."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    done = 0
    for data in itertools.chain(slices, [b""]):
        try:
            yield decoder.decode(data, final=not data)
        except UnicodeDecodeError as error:
            # the decoder may hold the first bytes of a character from the pieces before (a character's worth)
            held = len(error.object) - len(data)
            raise _BadByte(done + error.start - held, error.reason) from None
        done += len(data)


def _position(stream: BinaryIO, offset: int, step: int = 8 << 20) -> str:
    """The line and byte in its line of the byte at `offset` in `stream` (read from where it stands, a slice at a
    time), as "line 3, byte 13 (0xff)"."""
    line, column, left = 1, 1, offset
    while left:
        data = stream.read(min(step, left))
        if not data:
            break
        left -= len(data)
        newlines = data.count(b"\n")
        line, column = (line + newlines, len(data) - data.rfind(b"\n")) if newlines else (line, column + len(data))
    return f"line {line}, byte {column} (0x{stream.read(1)[0]:02x})"


def csv_problem(text: bytes | BinaryIO) -> str | None:
    """The first line of a UTF-8 CSV (its bytes, or a binary file open on it) that a strict reader refuses, or that
    holds more fields than the header, said for a person; None if there is none (then polars' own message is the
    best there is)."""
    # read as a stream: the file's text as one str would take 2-4 times its size
    stream = io.BytesIO(text) if isinstance(text, bytes) else text
    reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return None
        start = reader.line_num + 1
        for row in reader:
            if len(row) > len(header):
                return f"line {start} has {len(row)} fields, the header {len(header)}"
            start = reader.line_num + 1
    except csv.Error as error:
        if "end of data" in str(error):
            return f"line {start}: a quoted field is never closed (the file ends inside it)"
        return f"line {start}: {error}"
    return None


def open_bytes(path: str | Path) -> BinaryIO:
    """The file at `path` open for reading its bytes, decompressed if it is gzipped."""
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def utf8_problem(path: str | Path, step: int = 8 << 20) -> str | None:
    """Where the file at `path` (gzipped or not) stops being UTF-8, as "line 3, byte 13 (0xff)", read a slice at a
    time (for files too large to hold); None if it is UTF-8 throughout."""
    with open_bytes(path) as handle:
        try:
            for _ in _decoded(iter(lambda: handle.read(step), b""), "utf-8"):
                pass
            return None
        except _BadByte as bad:
            offset = bad.offset
    with open_bytes(path) as handle:
        return _position(handle, offset, step)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
