"""Streaming file writers that produce byte-identical output for identical input."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path


class CsvOut:
    """A CSV file written row batch by row batch; counts data rows for the manifest."""

    def __init__(self, path: Path, header: list[str], encoding: str = "utf-8", lineterminator: str = "\n",
                 gz: bool = False):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rows = 0
        self._raw = open(path, "wb")
        if gz:
            # mtime=0 and no file name in the header: the same rows always give the same bytes.
            self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)
            binary = self._gz
        else:
            self._gz = None
            binary = self._raw
        # GBK has no representation for some characters: failing loudly beats a silently lossy file.
        self._text = io.TextIOWrapper(binary, encoding=encoding, errors="strict", newline="")
        self._writer = csv.writer(self._text, lineterminator=lineterminator)
        self._writer.writerow(header)

    def write(self, rows: list) -> None:
        self._writer.writerows(rows)
        self.rows += len(rows)

    def close(self) -> None:
        self._text.flush()
        self._text.detach()
        if self._gz is not None:
            self._gz.close()
        self._raw.close()


class JsonlOut:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rows = 0
        self._f = open(path, "w", encoding="utf-8", newline="\n")

    def write(self, lines: list[str]) -> None:
        if lines:
            self._f.write("\n".join(lines))
            self._f.write("\n")
        self.rows += len(lines)

    def close(self) -> None:
        self._f.close()
