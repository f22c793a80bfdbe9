"""The landing sensor: a run of the whole graph when new export files arrive, each file once.

The cursor holds a short fingerprint of every file present in the landing folder when it was last looked at:
12 hex characters of sha1(relative path, size, mtime in ns). A file is new when its fingerprint is not in the
cursor, so a file replaced by a different export under the same name counts as new, and the cursor survives
restarts of the daemon (Dagster stores it). Fingerprints of files that left the folder are dropped, which keeps
the cursor as long as the folder's listing, not its history. A file touched without changing counts as new
again; the run then loads nothing twice, because ingest recognizes files by content hash.

Files modified in the last `settle_seconds` are left for a later tick: an export still being copied would
otherwise start a run on half a file (ingest also ignores *.part, *.tmp, *.crdownload and dot files).
"""

import hashlib
import time
from pathlib import Path

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from pipelines import ingest
from pipelines.defs.resources import OneIdPaths

LANDING_SENSOR_NAME = "oneid_landing_files"
CURSOR_VERSION = "v1"
SETTLE_SECONDS = 60
_FINGERPRINT_CHARS = 12


def fingerprint(relative_path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha1(f"{relative_path}\0{size}\0{mtime_ns}".encode()).hexdigest()[:_FINGERPRINT_CHARS]


def landing_files(landing_dir: Path, config_dir: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of every file ingest would read (the folders of config/sources.yml)."""
    config = ingest.load_config(Path(config_dir))
    root = Path(landing_dir)
    found = {}
    for folder in config.folders.values():
        for path in ingest.discover_files(root, folder):
            stat = path.stat()
            found[path.relative_to(root).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


def decode_cursor(cursor: str | None) -> set[str]:
    if not cursor:
        return set()
    version, _, body = cursor.partition(":")
    if version != CURSOR_VERSION:
        return set()  # an unknown format: looking at every file again is safe, ingest skips loaded ones
    return set(body.split(",")) if body else set()


def encode_cursor(fingerprints: set[str]) -> str:
    return f"{CURSOR_VERSION}:" + ",".join(sorted(fingerprints))


def new_files(
    files: dict[str, tuple[int, int]], seen: set[str], now_ns: int, settle_seconds: float = SETTLE_SECONDS
) -> tuple[list[str], list[str], set[str]]:
    """(new settled files, files still being written, the next cursor's fingerprints).

    A file still being written stays out of the next cursor, so a later tick sees it as new."""
    new, unsettled, keep = [], [], set()
    settle_ns = int(settle_seconds * 1e9)
    for rel, (size, mtime_ns) in sorted(files.items()):
        mark = fingerprint(rel, size, mtime_ns)
        if mark in seen:
            keep.add(mark)
        elif now_ns - mtime_ns < settle_ns:
            unsettled.append(rel)
        else:
            new.append(rel)
            keep.add(mark)
    return new, unsettled, keep


def build_landing_sensor(job, running: bool = False, settle_seconds: float = SETTLE_SECONDS):
    @sensor(
        name=LANDING_SENSOR_NAME,
        job=job,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED,
        description=(
            "Requests a run of the whole graph when new export files arrive in the landing folder "
            "(ONEID_LANDING_DIR); each file once, also across restarts."
        ),
    )
    def landing_sensor(context: SensorEvaluationContext, paths: OneIdPaths):
        landing = Path(paths.landing_dir)
        files = landing_files(landing, Path(paths.config_dir))
        seen = decode_cursor(context.cursor)
        new, unsettled, keep = new_files(files, seen, time.time_ns(), settle_seconds)
        cursor = encode_cursor(keep)
        if not new:
            waiting = f"; {len(unsettled)} still being written: {', '.join(unsettled[:5])}" if unsettled else ""
            return SensorResult(
                skip_reason=SkipReason(f"no new export files in {landing} ({len(keep)} seen before){waiting}"),
                cursor=cursor,
            )
        context.log.info(f"{len(new)} new export file(s): {', '.join(new)}")
        run_key = "landing-" + hashlib.sha1("\n".join(fingerprint(f, *files[f]) for f in new).encode()).hexdigest()[:16]
        shown = ", ".join(new[:3]) + (f" and {len(new) - 3} more" if len(new) > 3 else "")
        return SensorResult(
            run_requests=[
                RunRequest(run_key=run_key, tags={"oneid/trigger": "new landing files", "oneid/new_files": shown})
            ],
            cursor=cursor,
        )

    return landing_sensor
