"""One writer per warehouse: an exclusive lock on `<database>.lock` for the whole of a run.

DuckDB itself refuses a second process on a file, but only at the moment it opens it: two runs would interleave
step by step (each step opens and closes its connection, dbt opens its own), and the second would fail half-way
with a DuckDB IO error. The lock makes the second run fail at once, naming the lock and the run holding it.
flock is released by the kernel when the holder dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

LOCK_WAIT_ENV = "ONEID_LOCK_WAIT_SECONDS"


class WarehouseBusy(RuntimeError):
    """Another run holds the warehouse."""


class WarehouseNotWritable(RuntimeError):
    """The warehouse file or its folder cannot be written (read-only mount, permissions, disk full)."""


def lock_path(database: Path) -> Path:
    return Path(str(database) + ".lock")


def check_writable(database: Path) -> None:
    """Fail before any work when the warehouse cannot be written, instead of half-way through a step.

    Tries for real (a probe file beside the database, the database opened for writing) rather than reading
    permission bits: root ignores those, and a read-only mount or a full disk only shows when writing.
    """
    database = Path(database)
    folder = database.parent
    if not folder.is_dir():
        raise WarehouseNotWritable(f"warehouse folder {folder} does not exist; nothing was changed")
    probe = folder / f".{database.name}.write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as error:
        raise WarehouseNotWritable(
            f"warehouse folder {folder} is not writable ({error.strerror}; DuckDB writes {database.name}.wal "
            "beside the file); nothing was changed"
        ) from None
    if database.exists():
        try:
            os.close(os.open(database, os.O_WRONLY))
        except OSError as error:
            raise WarehouseNotWritable(
                f"warehouse {database} cannot be opened for writing ({error.strerror}); nothing was changed"
            ) from None


class WarehouseLock:
    """`with WarehouseLock(db):` holds the lock; waits up to `wait` seconds (ONEID_LOCK_WAIT_SECONDS, default 0)."""

    def __init__(self, database: Path, wait: float | None = None):
        self.database = Path(database)
        self.path = lock_path(self.database)
        self.wait = float(os.environ.get(LOCK_WAIT_ENV, "0") or 0) if wait is None else wait
        self._fd: int | None = None

    def acquire(self) -> "WarehouseLock":
        check_writable(self.database)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise WarehouseNotWritable(f"cannot create lock file {self.path}: {error.strerror}") from None
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise WarehouseBusy(
                        f"another OneID run holds the warehouse {self.database} (lock file {self.path}"
                        f"{', ' + holder if holder else ''}); wait for it to finish, or set {LOCK_WAIT_ENV} "
                        "to wait"
                    ) from None
                time.sleep(0.2)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}\n".encode())
        except OSError:
            pass  # the lock holds without the note (e.g. disk full)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WarehouseLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 64).decode(errors="replace").strip()
    except OSError:
        return ""
