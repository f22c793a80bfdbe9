"""What an ingest run did, as plain data (safe to turn into Dagster metadata or JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Status = Literal["loaded", "duplicate", "rejected"]


@dataclass(frozen=True)
class FileResult:
    path: str  # relative to the landing folder, POSIX separators (= _source_file / load_log.source_file)
    file_hash: str  # sha256 of the bytes
    layout: str | None
    status: Status
    rows_loaded: int = 0
    rows_quarantined: int = 0
    message: str = ""
    encoding: str | None = None
    # False when an identical load_log row already existed (re-run over an unchanged landing folder).
    logged: bool = True
    seconds: float = 0.0
    rows_forgotten: int = 0  # dropped: they carry a tombstoned identifier (pipelines/forget.py)


@dataclass
class SourceReport:
    source: str
    table: str
    folders: list[str] = field(default_factory=list)
    missing_folders: list[str] = field(default_factory=list)
    files: list[FileResult] = field(default_factory=list)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    @property
    def rows_forgotten(self) -> int:
        return sum(f.rows_forgotten for f in self.files)

    def count(self, status: Status) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def files_loaded(self) -> int:
        return self.count("loaded")

    @property
    def files_duplicate(self) -> int:
        return self.count("duplicate")

    @property
    def files_rejected(self) -> int:
        return self.count("rejected")

    @property
    def rejected(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "rejected"]

    def totals(self) -> dict[str, int]:
        return {
            "files": len(self.files),
            "files_loaded": self.files_loaded,
            "files_duplicate": self.files_duplicate,
            "files_rejected": self.files_rejected,
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
        }

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "table": self.table,
            "folders": list(self.folders),
            "missing_folders": list(self.missing_folders),
            **self.totals(),
            "file_results": [asdict(f) for f in self.files],
        }

    def summary(self) -> str:
        t = self.totals()
        line = (
            f"{self.table}: {t['files_loaded']} loaded, {t['files_duplicate']} duplicate, "
            f"{t['files_rejected']} rejected file(s); {t['rows_loaded']} rows loaded, "
            f"{t['rows_quarantined']} quarantined"
        )
        for f in self.rejected:
            line += f"\n  rejected {f.path}: {f.message}"
        return line
