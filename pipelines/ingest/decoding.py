"""Turn an export's bytes into UTF-8 bytes, or refuse.

polars parses UTF-8 only, and Chinese exports arrive as UTF-8, UTF-8 with a BOM (Excel, Douyin, most
CRMs) or GBK/GB18030 (Taobao/Tmall). A wrong guess does not fail loudly: GBK read as Latin-1 or
Latin-1 read as GBK yields plausible-looking garbage that would then be joined on. So a file is only
accepted when it decodes *strictly* in an encoding we have reason to expect; everything else is
rejected with the position of the first bad byte.
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass

import charset_normalizer
import pyarrow as pa

# GB18030 is a strict superset of GBK and GB2312, so it is the one codec we decode with for all three.
_GB_FAMILY = {"gb18030", "gbk", "gb2312", "cp936", "hz"}
_SAMPLE_BYTES = 256 * 1024


class DecodeError(ValueError):
    """The bytes are not text in any encoding this folder accepts."""


@dataclass(frozen=True)
class Decoded:
    data: bytes  # UTF-8, without BOM
    encoding: str  # what the file was: utf-8, utf-8-sig, gb18030, utf-16, ...


def _canonical(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return name.lower()


def _position(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    col = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return f"line {line}, byte {col} (0x{data[offset]:02x})" if offset < len(data) else f"line {line}"


def _is_utf8(data: bytes) -> bool:
    # Arrow's SIMD validator over a zero-copy view: ~6x faster than bytes.decode on a 150 MB export.
    offsets = pa.py_buffer(struct.pack("<2q", 0, len(data)))
    try:
        pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(data)]).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def decode_bytes(data: bytes, hints: tuple[str, ...] = ()) -> Decoded:
    """Decode ``data`` to UTF-8 bytes.

    ``hints`` are the encodings the folder's layouts declare; they widen what is accepted for
    non-UTF-8 input (e.g. ``big5``) but never override a BOM or valid UTF-8.
    """
    if data.startswith(codecs.BOM_UTF8):
        body = data[len(codecs.BOM_UTF8):]
        if not _is_utf8(body):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DecodeError(f"starts with a UTF-8 BOM but is not valid UTF-8 at {_position(body, e.start)}") from None
        return Decoded(body, "utf-8-sig")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text" export.
        try:
            return Decoded(data.decode("utf-16").encode("utf-8"), "utf-16")
        except UnicodeDecodeError as e:
            raise DecodeError(f"starts with a UTF-16 BOM but is not valid UTF-16 at byte {e.start}") from None
    if _is_utf8(data):
        return Decoded(data, "utf-8")
    try:
        data.decode("utf-8")
        return Decoded(data, "utf-8")  # only if Arrow and Python ever disagree
    except UnicodeDecodeError as e:
        utf8_error = e

    candidate = choose_legacy_encoding(data[:_SAMPLE_BYTES], len(data) > _SAMPLE_BYTES, hints,
                                       _position(data, utf8_error.start))
    try:
        utf8 = _transcode(data, candidate)
    except UnicodeDecodeError as e:
        raise DecodeError(
            f"not valid UTF-8 at {_position(data, utf8_error.start)}, and not valid {candidate} either at "
            f"{_position(data, e.start)}"
        ) from None
    return Decoded(utf8, candidate)


def choose_legacy_encoding(sample: bytes, truncated: bool, hints: tuple[str, ...], bad_utf8_at: str) -> str:
    """The non-UTF-8 encoding a sample of a file is in, among those accepted here; else DecodeError."""
    accepted = {_canonical(h) for h in hints if h} - {"utf-8", "utf-8-sig"}
    accepted |= _GB_FAMILY  # the Chinese legacy encoding is always plausible here, whatever the layout says
    # Cut the sample at a newline: a half multi-byte character at the end would skew the guess, and 0x0A
    # never occurs inside a GB18030 multi-byte sequence.
    if truncated and b"\n" in sample:
        sample = sample[: sample.rfind(b"\n") + 1]
    # Short Chinese snippets are statistically ambiguous (a few GBK names also read as Korean cp949), so
    # take the best *plausible* reading among the encodings this folder can receive, not the overall best.
    matches = charset_normalizer.from_bytes(sample)
    plausible = [_canonical(m.encoding) for m in matches]
    guessed = plausible[0] if plausible else None
    hinted = [_canonical(h) for h in hints if h and _canonical(h) in accepted]

    candidate = next((p for p in plausible if p in accepted), None)
    if candidate is None and not plausible and hinted:
        # Detection had no opinion at all (tiny file); a declared legacy encoding may still decode strictly.
        candidate = hinted[0]
    if candidate in _GB_FAMILY:
        candidate = "gb18030"
    if candidate is None:
        looks = f"looks like {guessed}" if guessed else "encoding not recognised"
        raise DecodeError(
            f"not valid UTF-8 at {bad_utf8_at} and {looks}, which is not accepted here "
            f"(accepted: UTF-8, UTF-8 with BOM, GBK/GB18030{''.join(', ' + h for h in sorted(accepted - _GB_FAMILY))})"
        )
    return candidate


def _transcode(data: bytes, encoding: str, step: int = 8 << 20) -> bytes:
    """Strictly decode ``data`` to UTF-8 in slices: a whole CJK file as one Python str costs ~4x its size."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    view = memoryview(data)
    out = []
    for start in range(0, len(data), step):
        try:
            out.append(decoder.decode(view[start:start + step], final=start + step >= len(data)).encode("utf-8"))
        except UnicodeDecodeError as e:
            # Positions are relative to this slice (plus any bytes the decoder carried over).
            raise UnicodeDecodeError(e.encoding, data, start + e.start, start + e.end, e.reason) from None
    if not data:
        return b""
    return b"".join(out)


# ----------------------------------------------------------------------------------------------------
# Streaming: a large export is decoded block by block, so memory is bounded by the block size.

BLOCK_BYTES = 16 << 20  # ~110k order rows: polars and DuckDB work on ~300 MB, whatever the file size


class TextStream:
    """A file's text as UTF-8 blocks that each end at a newline (the last one may not).

    ``open_stream`` is called once per pass (a file can be read twice: once to decide the encoding,
    once to parse). The encoding is decided up front from the whole file, exactly as ``decode_bytes``
    decides it for bytes in memory: a BOM, else strict UTF-8 over *every* byte, else the plausible
    legacy encoding found on a sample, which must then decode strictly to the end (``blocks`` raises
    ``DecodeError`` at the first bad byte; the caller's transaction makes that all-or-nothing).
    """

    def __init__(self, open_stream, hints: tuple[str, ...] = (), block_bytes: int | None = None):
        self._open = open_stream
        self._block = block_bytes or BLOCK_BYTES
        self.encoding, self._bom = self._detect(hints)

    def _raw_blocks(self):
        with self._open() as fh:
            while True:
                chunk = fh.read(self._block)
                if not chunk:
                    return
                yield chunk

    def _detect(self, hints: tuple[str, ...]) -> tuple[str, int]:
        first = b""
        sample = bytearray()
        bad_at: int | None = None  # offset of the first byte that is not UTF-8
        non_ascii = False  # any non-ASCII byte before bad_at
        consumed = 0
        carry = b""
        for chunk in self._raw_blocks():
            if not first:
                first = chunk[:4]
                if chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    return "utf-16", 0
            if len(sample) < _SAMPLE_BYTES:
                sample += chunk[: _SAMPLE_BYTES - len(sample)]
            if bad_at is None:
                data = carry + chunk
                # Validate up to the last complete character, carry the rest over to the next block.
                cut = _utf8_safe_cut(data)
                if not _is_utf8(data[:cut]):
                    bad_at = consumed + _first_bad_utf8(data[:cut])
                    non_ascii = non_ascii or not data[: bad_at - consumed].isascii()
                else:
                    non_ascii = non_ascii or not data[:cut].isascii()
                consumed += cut
                carry = data[cut:]
            elif len(sample) >= _SAMPLE_BYTES:
                break
        if bad_at is None and carry:
            if not _is_utf8(carry):
                bad_at = consumed + _first_bad_utf8(carry)
                non_ascii = non_ascii or not carry[: bad_at - consumed].isascii()
        bom = len(codecs.BOM_UTF8) if first.startswith(codecs.BOM_UTF8) else 0
        if bad_at is None:
            return ("utf-8-sig" if bom else "utf-8"), bom
        if bom:
            raise DecodeError(f"starts with a UTF-8 BOM but is not valid UTF-8 at {self._where(bad_at - bom, skip=bom)}")
        if non_ascii and bad_at > len(sample):
            # UTF-8 text (not just ASCII) for more than the sample, then something else: two files glued
            # together, or a partly re-saved export. Any single decoding would garble one of the parts.
            raise DecodeError(f"valid UTF-8 (with non-ASCII text) up to {self._where(bad_at)}, then not: "
                              "mixed encodings in one file")
        if _is_utf8(_cut_at_newline(bytes(sample))):
            # The head is clean (often pure ASCII): judge the encoding where the first non-UTF-8 byte is.
            sample = self._sample_at(bad_at)
        return choose_legacy_encoding(bytes(sample), True, hints, self._where(bad_at)), 0

    def _sample_at(self, offset: int) -> bytes:
        start = max(0, offset - 4096)
        out, pos = bytearray(), 0
        for chunk in self._raw_blocks():
            if pos + len(chunk) > start:
                out += chunk[max(0, start - pos):]
                if len(out) >= _SAMPLE_BYTES:
                    break
            pos += len(chunk)
        out = out[:_SAMPLE_BYTES]
        nl = out.find(b"\n", 0, offset - start)
        return bytes(out[nl + 1:] if start and nl >= 0 else out)

    def _where(self, offset: int, skip: int = 0) -> str:
        """`line L, byte B (0xNN)` of a file offset, counted by reading up to it."""
        line, last_nl, pos = 1, -1, 0
        for chunk in self._raw_blocks():
            chunk = chunk[skip:] if pos == 0 and skip else chunk
            end = min(len(chunk), offset - pos)
            line += chunk.count(b"\n", 0, end)
            nl = chunk.rfind(b"\n", 0, end)
            if nl >= 0:
                last_nl = pos + nl
            if offset < pos + len(chunk):
                return f"line {line}, byte {offset - last_nl} (0x{chunk[offset - pos]:02x})"
            pos += len(chunk)
        return f"line {line}"

    def blocks(self):
        """UTF-8 blocks, each ending at a newline except possibly the last; BOM removed."""
        if self.encoding == "utf-16":
            with self._open() as fh:
                data = fh.read()
            try:
                yield data.decode("utf-16").encode("utf-8")
            except UnicodeDecodeError as e:
                raise DecodeError(f"starts with a UTF-16 BOM but is not valid UTF-16 at byte {e.start}") from None
            return
        transcode = self.encoding not in ("utf-8", "utf-8-sig")
        decoder = codecs.getincrementaldecoder(self.encoding)("strict") if transcode else None
        carry = b""
        first = True
        lines_before, pos = 0, 0
        for chunk in self._raw_blocks():
            if first and self._bom:
                chunk = chunk[self._bom:]
            first = False
            if decoder is not None:
                try:
                    text = decoder.decode(chunk).encode("utf-8")
                except UnicodeDecodeError as e:
                    line = lines_before + chunk.count(b"\n", 0, e.start) + 1
                    col = e.start - (chunk.rfind(b"\n", 0, e.start) + 1) + 1
                    raise DecodeError(
                        f"not valid UTF-8, and not valid {self.encoding} either at line {line}, byte {col} "
                        f"(0x{chunk[e.start]:02x})"
                    ) from None
                lines_before += chunk.count(b"\n")
            else:
                text = chunk
            pos += len(chunk)
            data = carry + text if carry else text
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            carry = data[cut:]
            yield data[:cut]
        if decoder is not None:
            try:
                carry += decoder.decode(b"", final=True).encode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError(f"not valid {self.encoding}: the file ends inside a character") from None
        if carry:
            yield carry


def _utf8_safe_cut(data: bytes) -> int:
    """Length of the longest prefix of ``data`` that does not end inside a UTF-8 sequence."""
    i, k = len(data) - 1, 0
    while i >= 0 and k < 3 and (data[i] & 0xC0) == 0x80:
        i, k = i - 1, k + 1
    if i >= 0 and data[i] >= 0xC0:
        return i  # a lead byte: its sequence may be incomplete; validate it with the next block
    return len(data)


def _cut_at_newline(sample: bytes) -> bytes:
    return sample[: sample.rfind(b"\n") + 1] if b"\n" in sample else sample


def _first_bad_utf8(data: bytes) -> int:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start
    return len(data)
