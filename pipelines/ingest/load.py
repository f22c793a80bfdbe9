"""Loading landing files into the DuckDB `raw` schema.

A file loads all-or-nothing: its good rows, its quarantine entries and its load_log row are either all
there or none are. A small file is one transaction. A large one is streamed in blocks and committed block
by block (DuckDB keeps an open transaction's rows in memory), with an inflight marker that makes a failure
delete what was committed and lets the next run clean up after a crash; load_log says `loaded` last.
Identity is the sha256 of the bytes, not the name: exports get renamed, copied and re-dropped, and loading
the same bytes twice would double every order.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from pipelines.faults import crash_point
from pipelines.validation.masking import mask_phones

from .catalog import (
    CANONICAL_SOURCES, INFLIGHT_TABLE, LOAD_LOG_COLUMNS, QUARANTINE_COLUMNS, RAW_SCHEMA, add_missing_columns_ddl, ddl,
    raw_table, table_columns,
)
from .config import SUFFIX_FAMILY, IngestConfig, LandingFolder, Layout
from .readers import ReadResult, RejectFile, read_json, read_tabular
from .report import FileResult, SourceReport
from .transform import QUARANTINE_SCHEMA, transform

_SHANGHAI = ZoneInfo("Asia/Shanghai")
CHUNK_ROWS = 250_000
ROW_GROUP_ROWS = 122_880  # DuckDB's row group: commit whole ones, partial ones compress worse
COMMIT_ROWS = 4 * ROW_GROUP_ROWS  # ~490k rows: larger commits are faster, smaller ones use less memory


RowDropper = Callable[[str, pl.DataFrame], tuple[pl.DataFrame, int]]


class _TransformFailed(Exception):
    """A bug-shaped failure while typing one file: reject that file, keep going with the others."""


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create schema ``raw`` and its tables if missing, and add canonical columns newer than the warehouse
    (safe to call on every run)."""
    for statement in ddl():
        con.execute(statement)
    for source in CANONICAL_SOURCES:
        schema, name = raw_table(source).split(".")
        existing = {row[0] for row in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [schema, name]).fetchall()}
        for statement in add_missing_columns_ddl(raw_table(source), existing, table_columns(source)):
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
                rows_loaded: int, rows_quarantined: int, message: str, loaded_at: datetime,
                rows_forgotten: int = 0) -> None:
    cols = ", ".join(c for c, _ in LOAD_LOG_COLUMNS)
    con.execute(
        f"INSERT INTO {RAW_SCHEMA}.load_log ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [source, rel, file_hash, layout, status, rows_loaded, rows_quarantined, message, loaded_at, rows_forgotten],
    )


def _log_nothing_loaded(con, source: str, rel: str, file_hash: str, layout: str | None, status: str,
                        message: str) -> None:
    """Log a file that added no rows (rejected, duplicate) in a transaction of its own."""
    con.begin()
    try:
        _insert_log(con, source, rel, file_hash, layout, status, 0, 0, message, _now())
        con.commit()
    except BaseException:
        con.rollback()
        raise


def _insert_frame(con, table: str, frame: pl.DataFrame, columns: list[str]) -> None:
    if frame.height == 0:
        return
    view = "__oneid_ingest_batch"
    # One Arrow batch per insert: a frame glued from many typed chunks would reach DuckDB as many small
    # batches, which its parallel insert writes as partial row groups that the next checkpoint reads back
    # and compresses again (6M login rows: 47 s of insert and checkpoint, 18 s after rechunking).
    frame = frame.rechunk()
    # Arrow string views: zero-copy from polars, and DuckDB ingests them faster than large_string.
    con.register(view, frame.to_arrow(compat_level=pl.CompatLevel.newest()))
    try:
        cols = ", ".join(columns)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {view}")
    finally:
        con.unregister(view)


def _reject(con, source: str, rel: str, file_hash: str, message: str, encoding: str | None = None,
            layout: str | None = None) -> FileResult:
    # A parser's message can quote a line of the file: mask phones before it reaches load_log, the UI and logs.
    message = mask_phones(message)
    # A rejected file is retried on every run (the fix may be a config change); log each distinct
    # rejection once so that re-running over the same landing folder adds nothing.
    logged = not _log_exists(con, rel, file_hash, ("rejected",), message)
    if logged:
        _log_nothing_loaded(con, source, rel, file_hash, layout, "rejected", message)
    return FileResult(rel, file_hash, layout, "rejected", 0, 0, message, encoding, logged)


def parse_file(path: Path, folder: LandingFolder, config: IngestConfig, name: str | None = None) -> ReadResult:
    """Decode, parse and pick the layout of one file (no database involved).

    Only the first block is parsed here; the returned ``batches`` parse the rest as they are consumed.
    """
    path = Path(path)
    suffix, compressed = _effective_suffix(name or path.name)

    def open_stream():
        return gzip.open(path, "rb") if compressed else open(path, "rb")

    if compressed:
        try:
            with open_stream() as fh:
                fh.read(1)
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
    try:
        if family == "tabular":
            return read_tabular(open_stream, suffix, candidates, folder.name, CHUNK_ROWS)
        return read_json(open_stream, suffix, candidates, folder.name)
    except (OSError, EOFError) as e:  # a truncated .gz shows up while reading
        raise RejectFile(f"cannot read: {type(e).__name__}: {e}") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    landing_dir: Path,
    folder: LandingFolder,
    config: IngestConfig,
    drop_rows: RowDropper | None = None,
) -> FileResult:
    """Load one landing file into ``raw.<source>``; never raises for a bad file, only for a broken database.

    ``drop_rows(source, rows) -> (kept, dropped)`` removes rows before they are stored: ingest's hook for
    deletion tombstones (pipelines/forget.py), counted in load_log.rows_forgotten.
    """
    started = time.perf_counter()
    result = _ingest_file(con, Path(path), Path(landing_dir), folder, config, drop_rows)
    return replace(result, seconds=round(time.perf_counter() - started, 3))


def _ingest_file(con, path: Path, landing_dir: Path, folder: LandingFolder, config: IngestConfig,
                 drop_rows: RowDropper | None = None) -> FileResult:
    source = folder.source
    # abspath, not resolve(): a symlinked export must keep its landing-folder name, not its target's.
    rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(landing_dir)).as_posix()
    file_hash = _sha256(Path(path))

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
            _log_nothing_loaded(con, source, rel, file_hash, None, "duplicate", message)
        return FileResult(rel, file_hash, None, "duplicate", 0, 0, message, None, logged)

    try:
        read = parse_file(path, folder, config)
    except RejectFile as e:
        return _reject(con, source, rel, file_hash, f"{rel}: {e}")
    except Exception as e:  # an unexpected parser failure must not stop the other files
        return _reject(con, source, rel, file_hash, f"{rel}: {type(e).__name__}: {e}")

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
    q_columns = [c for c, _ in QUARANTINE_COLUMNS]
    q_values = [
        pl.lit(source, pl.String).alias("source"),
        pl.lit(rel, pl.String).alias("source_file"),
        pl.lit(file_hash, pl.String).alias("file_hash"),
        pl.lit(loaded_at, pl.Datetime("us")).alias("loaded_at"),
    ]
    rows_loaded = rows_quarantined = rows_forgotten = 0
    first_problem = None
    inflight = False
    pending: list[pl.DataFrame] = []  # typed rows not inserted yet
    pending_rows = 0

    def flush(final: bool) -> None:
        """Insert pending rows; mid-file, only whole DuckDB row groups, then commit and checkpoint."""
        nonlocal inflight, pending, pending_rows
        if not pending:
            return
        rows = pl.concat(pending, how="vertical") if len(pending) > 1 else pending[0]
        keep = rows.height if final else rows.height - rows.height % ROW_GROUP_ROWS
        _insert_frame(con, table, rows.slice(0, keep), columns)
        pending = [rows.slice(keep)] if keep < rows.height else []
        pending_rows = rows.height - keep
        if final:
            return
        if not inflight:
            con.execute(f"INSERT INTO {INFLIGHT_TABLE} VALUES (?, ?, ?, ?)", [source, rel, file_hash, loaded_at])
            inflight = True
        con.commit()
        crash_point("ingest:mid_file")
        _checkpoint(con)
        con.begin()

    con.begin()
    try:
        # The reader hands out bounded batches (16 MB blocks of the file), each typed in chunks. Rows are
        # inserted COMMIT_ROWS at a time (whole DuckDB row groups). A small file is one transaction. A
        # larger one is committed and checkpointed every COMMIT_ROWS, because DuckDB keeps what a
        # transaction appended, and what is not checkpointed yet, in memory: one transaction per 4 GB file
        # would hold the file. The file stays all-or-nothing all the same: an inflight marker commits with
        # the first rows, any failure deletes what was committed, a crash leaves the marker for the next run
        # to clean up (recover_inflight), and load_log says `loaded` only at the end.
        for batch in read.batches:
            quarantine_parts = []
            if batch.problems:
                quarantine_parts.append(pl.DataFrame([dict(zip(QUARANTINE_SCHEMA, p)) for p in batch.problems],
                                                     schema=QUARANTINE_SCHEMA, orient="row"))
            for offset in range(0, batch.frame.height, CHUNK_ROWS):
                chunk = batch.frame.slice(offset, CHUNK_ROWS)
                try:
                    result = transform(chunk, layout, scope)
                except Exception as e:
                    raise _TransformFailed(f"{rel}: {type(e).__name__}: {e}") from e
                if drop_rows is not None and result.rows.height:
                    kept, dropped = drop_rows(source, result.rows)
                    result = replace(result, rows=kept)
                    rows_forgotten += dropped
                if result.rows.height:
                    pending.append(result.rows.with_columns(load_values))
                    pending_rows += result.rows.height
                rows_loaded += result.rows.height
                if result.quarantine.height:
                    quarantine_parts.append(result.quarantine)
            if quarantine_parts:
                # Batches cover disjoint rows in file order: per-batch counts add up, the first batch's
                # first entry is the file's first problem.
                quarantine = pl.concat(quarantine_parts).sort("row_number", maintain_order=True)
                rows_quarantined += int(quarantine["row_number"].n_unique())
                if first_problem is None:
                    first_problem = quarantine.row(0, named=True)
                _insert_frame(con, f"{RAW_SCHEMA}.quarantine", quarantine.with_columns(q_values), q_columns)
            if pending_rows >= COMMIT_ROWS:
                flush(final=False)
        flush(final=True)
        message = f"{rows_loaded} rows loaded"
        if rows_quarantined:
            first = first_problem
            message += (
                f", {rows_quarantined} rows quarantined (first: row {first['row_number']}"
                f"{', column ' + first['column_name'] if first['column_name'] else ''}: {first['reason']})"
            )
        if rows_forgotten:
            message += f", {rows_forgotten} rows dropped: they carry an identifier of a forgotten person"
        _insert_log(con, source, rel, file_hash, layout.name, "loaded", rows_loaded, rows_quarantined, message,
                    loaded_at, rows_forgotten)
        if inflight:
            con.execute(f"DELETE FROM {INFLIGHT_TABLE} WHERE file_hash = ? AND source_file = ?", [file_hash, rel])
        crash_point("ingest:before_commit")
        con.commit()
        if inflight:
            _checkpoint(con)
    except (RejectFile, _TransformFailed) as e:
        con.rollback()
        if inflight:
            _delete_partial(con, source, rel, file_hash)
        msg = f"{rel}: {e}" if isinstance(e, RejectFile) else str(e)
        return _reject(con, source, rel, file_hash, msg, read.encoding, layout.name)
    except BaseException:
        con.rollback()
        if inflight:
            try:
                _delete_partial(con, source, rel, file_hash)
            except Exception:
                pass  # the marker stays; the next run deletes the partial rows before loading anything
        raise
    return FileResult(rel, file_hash, layout.name, "loaded", rows_loaded, rows_quarantined, message, read.encoding,
                      rows_forgotten=rows_forgotten)


def _checkpoint(con) -> None:
    """Checkpoint after each committed block of a large file.

    DuckDB writes a big append straight to the database file but finishes it (merging the row groups)
    at the next checkpoint, reading back everything appended since the last one: left to the automatic
    checkpoint, a 4M-row file costs ~2 GB at its last commit. Checkpointing per block keeps that bounded.
    Skipped, not fatal, when the database cannot checkpoint right now (another open transaction).
    """
    try:
        con.execute("CHECKPOINT")
    except duckdb.Error:
        pass


def _delete_partial(con, source: str, rel: str, file_hash: str) -> None:
    """Delete the committed rows of a file whose load did not finish, and its inflight marker."""
    con.begin()
    try:
        con.execute(f"DELETE FROM {raw_table(source)} WHERE _file_hash = ? AND _source_file = ?", [file_hash, rel])
        con.execute(f"DELETE FROM {RAW_SCHEMA}.quarantine WHERE file_hash = ? AND source_file = ? AND source = ?",
                    [file_hash, rel, source])
        con.execute(f"DELETE FROM {INFLIGHT_TABLE} WHERE file_hash = ? AND source_file = ?", [file_hash, rel])
        con.commit()
    except BaseException:
        con.rollback()
        raise


def recover_inflight(con: duckdb.DuckDBPyConnection, source: str) -> list[str]:
    """Delete what an interrupted load of ``raw.<source>`` left behind; returns the files cleaned up."""
    left = con.execute(
        f"SELECT source_file, file_hash FROM {INFLIGHT_TABLE} WHERE source = ? ORDER BY started_at", [source]
    ).fetchall()
    for rel, file_hash in left:
        _delete_partial(con, source, rel, file_hash)
    return [rel for rel, _ in left]


def ingest_source(
    con: duckdb.DuckDBPyConnection,
    source: str,
    landing_dir: Path,
    config: IngestConfig,
    drop_rows: RowDropper | None = None,
) -> SourceReport:
    """Load every new file of every landing folder feeding ``raw.<source>``.

    Idempotent: files whose bytes are already in ``raw.load_log`` as loaded add no rows.
    """
    ensure_schema(con)
    recover_inflight(con, source)
    landing_dir = Path(landing_dir)
    folders = config.folders_for(source)
    report = SourceReport(source=source, table=raw_table(source), folders=[f.name for f in folders])
    for folder in folders:
        if not (landing_dir / folder.path).is_dir():
            report.missing_folders.append(folder.path)
            continue
        for path in discover_files(landing_dir, folder):
            report.files.append(ingest_file(con, path, landing_dir, folder, config, drop_rows))
    return report


def ingest_all(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    config: IngestConfig,
) -> dict[str, SourceReport]:
    """``ingest_source`` for every canonical source the config feeds, in contract order."""
    return {source: ingest_source(con, source, landing_dir, config) for source in config.sources}
