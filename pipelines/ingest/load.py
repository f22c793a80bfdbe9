"""Loading landing files into the DuckDB `raw` schema.

One file = one transaction: its good rows, its quarantine entries and its load_log row commit together
or not at all, so a crash mid-run never leaves half a file behind and a re-run picks up exactly the
files that are not in load_log yet. Identity is the sha256 of the bytes, not the name: exports get
renamed, copied and re-dropped, and loading the same bytes twice would double every order.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import os
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from .catalog import LOAD_LOG_COLUMNS, QUARANTINE_COLUMNS, RAW_SCHEMA, ddl, raw_table, table_columns
from .config import SUFFIX_FAMILY, IngestConfig, LandingFolder, Layout
from .readers import ReadResult, RejectFile, read_json, read_tabular
from .report import FileResult, SourceReport
from .transform import QUARANTINE_SCHEMA, transform

_SHANGHAI = ZoneInfo("Asia/Shanghai")
CHUNK_ROWS = 250_000


class _TransformFailed(Exception):
    """A bug-shaped failure while typing one file: reject that file, keep going with the others."""


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create schema ``raw`` and its tables if missing (safe to call on every run)."""
    for statement in ddl():
        con.execute(statement)


def _now() -> datetime:
    # Contract: every timestamp in raw is naive China time.
    return datetime.now(_SHANGHAI).replace(tzinfo=None)


def discover_files(landing_dir: Path, folder: LandingFolder) -> list[Path]:
    """Files of a landing folder (recursively), in a stable order, minus hidden/temporary ones."""
    root = Path(landing_dir) / folder.path
    if not root.is_dir():
        return []
    found = []
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        rel_parts = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel_parts[:-1]):
            continue
        if any(fnmatch.fnmatch(p.name, pat) for pat in folder.ignore):
            continue
        found.append(p)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _effective_suffix(name: str) -> tuple[str, bool]:
    lower = name.lower()
    if lower.endswith(".gz"):
        return PurePosixPath(lower[:-3]).suffix, True
    return PurePosixPath(lower).suffix, False


def _log_exists(con, rel: str, file_hash: str, statuses: tuple[str, ...], message: str | None = None) -> bool:
    marks = ", ".join("?" * len(statuses))
    sql = f"SELECT 1 FROM {RAW_SCHEMA}.load_log WHERE source_file = ? AND file_hash = ? AND status IN ({marks})"
    params: list = [rel, file_hash, *statuses]
    if message is not None:
        sql += " AND message = ?"
        params.append(message)
    return bool(con.execute(sql + " LIMIT 1", params).fetchall())


def _insert_log(con, source: str, rel: str, file_hash: str, layout: str | None, status: str,
                rows_loaded: int, rows_quarantined: int, message: str, loaded_at: datetime) -> None:
    cols = ", ".join(c for c, _ in LOAD_LOG_COLUMNS)
    con.execute(
        f"INSERT INTO {RAW_SCHEMA}.load_log ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [source, rel, file_hash, layout, status, rows_loaded, rows_quarantined, message, loaded_at],
    )


def _insert_frame(con, table: str, frame: pl.DataFrame, columns: list[str]) -> None:
    if frame.height == 0:
        return
    view = "__oneid_ingest_batch"
    # Arrow string views: zero-copy from polars, and DuckDB ingests them faster than large_string.
    con.register(view, frame.to_arrow(compat_level=pl.CompatLevel.newest()))
    try:
        cols = ", ".join(columns)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {view}")
    finally:
        con.unregister(view)


def _reject(con, source: str, rel: str, file_hash: str, message: str, encoding: str | None = None,
            layout: str | None = None) -> FileResult:
    # A rejected file is retried on every run (the fix may be a config change); log each distinct
    # rejection once so that re-running over the same landing folder adds nothing.
    logged = not _log_exists(con, rel, file_hash, ("rejected",), message)
    if logged:
        con.begin()
        try:
            _insert_log(con, source, rel, file_hash, layout, "rejected", 0, 0, message, _now())
            con.commit()
        except BaseException:
            con.rollback()
            raise
    return FileResult(rel, file_hash, layout, "rejected", 0, 0, message, encoding, logged)


def parse_file(data: bytes, name: str, folder: LandingFolder, config: IngestConfig) -> ReadResult:
    """Decode, parse and pick the layout of one file's bytes (no database involved)."""
    suffix, compressed = _effective_suffix(name)
    if compressed:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise RejectFile(f"cannot gunzip: {e}") from None
    family = SUFFIX_FAMILY.get(suffix)
    layouts: list[Layout] = [config.layouts[n] for n in folder.layouts]
    candidates = [lay for lay in layouts if lay.family == family]
    if not candidates:
        accepted = sorted({s for s, fam in SUFFIX_FAMILY.items() if fam in {lay.family for lay in layouts}})
        raise RejectFile(
            f"no layout allowed in {folder.name}/ reads {suffix or 'extension-less'} files "
            f"(this folder takes {', '.join(accepted)})"
        )
    if family == "tabular":
        return read_tabular(data, suffix, candidates, folder.name)
    return read_json(data, suffix, candidates, folder.name)


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    landing_dir: Path,
    folder: LandingFolder,
    config: IngestConfig,
) -> FileResult:
    """Load one landing file into ``raw.<source>``; never raises for a bad file, only for a broken database."""
    started = time.perf_counter()
    result = _ingest_file(con, Path(path), Path(landing_dir), folder, config)
    return replace(result, seconds=round(time.perf_counter() - started, 3))


def _ingest_file(con, path: Path, landing_dir: Path, folder: LandingFolder, config: IngestConfig) -> FileResult:
    source = folder.source
    # abspath, not resolve(): a symlinked export must keep its landing-folder name, not its target's.
    rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(landing_dir)).as_posix()
    data = Path(path).read_bytes()
    file_hash = hashlib.sha256(data).hexdigest()

    # fetchall (not fetchone) so no result stays pending on the connection when a transaction begins.
    prior = con.execute(
        f"SELECT source_file FROM {RAW_SCHEMA}.load_log WHERE file_hash = ? AND status = 'loaded' "
        "ORDER BY loaded_at LIMIT 1",
        [file_hash],
    ).fetchall()
    if prior:
        first = prior[0][0]
        message = "already loaded" if first == rel else f"same bytes already loaded from {first}"
        # Logged once per path and content: the first re-run records that it saw the file again,
        # later runs over an unchanged landing folder add nothing.
        logged = not _log_exists(con, rel, file_hash, ("duplicate",))
        if logged:
            con.begin()
            try:
                _insert_log(con, source, rel, file_hash, None, "duplicate", 0, 0, message, _now())
                con.commit()
            except BaseException:
                con.rollback()
                raise
        return FileResult(rel, file_hash, None, "duplicate", 0, 0, message, None, logged)

    try:
        read = parse_file(data, path.name, folder, config)
    except RejectFile as e:
        return _reject(con, source, rel, file_hash, f"{rel}: {e}")
    except Exception as e:  # an unexpected parser failure must not stop the other files
        return _reject(con, source, rel, file_hash, f"{rel}: {type(e).__name__}: {e}")
    del data  # the bytes can be as large as the frame; no need to hold both through the insert

    layout = read.layout
    scope = dict(folder.scope)
    loaded_at = _now()
    load_values = [
        pl.lit(rel, pl.String).alias("_source_file"),
        pl.lit(file_hash, pl.String).alias("_file_hash"),
        pl.col("_row_number").cast(pl.Int64),
        pl.lit(layout.name, pl.String).alias("_layout"),
        pl.lit(loaded_at, pl.Datetime("us")).alias("_loaded_at"),
    ]
    table, columns = raw_table(source), [c for c, _ in table_columns(source)]
    quarantine_parts = [
        pl.DataFrame([dict(zip(QUARANTINE_SCHEMA, p)) for p in read.problems], schema=QUARANTINE_SCHEMA)
    ]
    rows_loaded = 0

    con.begin()
    try:
        # Chunks bound peak memory (cleaned and typed copies of a whole 1M-row export would triple it);
        # they all commit together with the load_log row, so a file still loads all-or-nothing.
        for offset in range(0, read.frame.height, CHUNK_ROWS):
            chunk = read.frame.slice(offset, CHUNK_ROWS)
            try:
                result = transform(chunk, layout, scope)
            except Exception as e:
                raise _TransformFailed(f"{rel}: {type(e).__name__}: {e}") from e
            _insert_frame(con, table, result.rows.with_columns(load_values), columns)
            rows_loaded += result.rows.height
            quarantine_parts.append(result.quarantine)
        quarantine = pl.concat(quarantine_parts).sort("row_number", maintain_order=True)
        rows_quarantined = int(quarantine["row_number"].n_unique()) if quarantine.height else 0
        message = f"{rows_loaded} rows loaded"
        if rows_quarantined:
            first = quarantine.row(0, named=True)
            message += (
                f", {rows_quarantined} rows quarantined (first: row {first['row_number']}"
                f"{', column ' + first['column_name'] if first['column_name'] else ''}: {first['reason']})"
            )
        quarantine = quarantine.with_columns(
            pl.lit(source, pl.String).alias("source"),
            pl.lit(rel, pl.String).alias("source_file"),
            pl.lit(file_hash, pl.String).alias("file_hash"),
            pl.lit(loaded_at, pl.Datetime("us")).alias("loaded_at"),
        )
        _insert_frame(con, f"{RAW_SCHEMA}.quarantine", quarantine, [c for c, _ in QUARANTINE_COLUMNS])
        _insert_log(con, source, rel, file_hash, layout.name, "loaded", rows_loaded, rows_quarantined, message, loaded_at)
        con.commit()
    except _TransformFailed as e:
        con.rollback()
        return _reject(con, source, rel, file_hash, str(e), read.encoding, layout.name)
    except BaseException:
        con.rollback()
        raise
    return FileResult(rel, file_hash, layout.name, "loaded", rows_loaded, rows_quarantined, message, read.encoding)


def ingest_source(
    con: duckdb.DuckDBPyConnection,
    source: str,
    landing_dir: Path,
    config: IngestConfig,
) -> SourceReport:
    """Load every new file of every landing folder feeding ``raw.<source>``.

    Idempotent: files whose bytes are already in ``raw.load_log`` as loaded add no rows.
    """
    ensure_schema(con)
    landing_dir = Path(landing_dir)
    folders = config.folders_for(source)
    report = SourceReport(source=source, table=raw_table(source), folders=[f.name for f in folders])
    for folder in folders:
        if not (landing_dir / folder.path).is_dir():
            report.missing_folders.append(folder.path)
            continue
        for path in discover_files(landing_dir, folder):
            report.files.append(ingest_file(con, path, landing_dir, folder, config))
    return report


def ingest_all(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    config: IngestConfig,
) -> dict[str, SourceReport]:
    """``ingest_source`` for every canonical source the config feeds, in contract order."""
    return {source: ingest_source(con, source, landing_dir, config) for source in config.sources}
