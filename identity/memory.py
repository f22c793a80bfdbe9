"""How the process takes and gives back memory while it works on arrays of millions of rows.

On the virtual machines this is measured on (2 cores), memory the process takes from the system for the first
time costs far more than the work done in it: every 4 KB page is zeroed by the kernel on first touch, and the
pages of a freed array go back to the system and are zeroed again for the next one. At 10M links `resolve`
touched 2.6M pages (10 GB) for a 5.8 GB peak, and about a quarter of its CPU time was the kernel's. On some
days memory past the first 2-3 GB a process takes costs 8-13 s per GB to fill, and 2 MB transparent huge pages
cost that from the first GB, where 4 KB pages cost 0.5 s (docs/identity.md, "The machine's memory"). Set here for
the duration of one call (docs/identity.md, "Sorts, threads and the allocator"): transparent huge pages off for
the whole process, numpy's own huge pages off, and glibc's malloc, which numpy allocates its arrays with, keeping
its freed blocks. (polars' jemalloc can only be set before polars is imported: `_RJEM_MALLOC_CONF`, which the
bench sets.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
import sys
import threading

import numpy as np

# mallopt parameters (malloc.h) and glibc's defaults for them
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
# the largest trim threshold mallopt takes (an int): freed memory at the top of the heap stays below this much
_KEEP_FREED = 2**31 - 1


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc's libc, or None elsewhere (musl, macOS), where the malloc settings below are skipped. Looked up at
    the first call, not at import (finding the library takes a few milliseconds)."""
    if platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


class _HeldSetting:
    """A process-wide setting made when the first of the calls that ask for it starts and undone when the last of
    them ends, whether they are nested or run in other threads. `make()` returns what `undo` is given back (the
    setting it found, say)."""

    def __init__(self, make, undo) -> None:
        self._make, self._undo = make, undo
        self._lock = threading.Lock()
        self._depth = 0
        self._found = None

    def __enter__(self) -> None:
        with self._lock:
            self._depth += 1
            if self._depth == 1:
                self._found = self._make()

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._undo(self._found)


def malloc_trim() -> bool:
    """Asks glibc to give free heap memory back to the system (the top of the heap, and free pages inside it);
    False where there is no glibc, where this does nothing."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def _caller_tuned_malloc() -> bool:
    # GLIBC_TUNABLES is read once at start: whoever set malloc tunables there gets exactly those
    return "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


def reusing_freed_heap(function):
    """Runs `function` with glibc's malloc serving large blocks from its heap and keeping what is freed there for
    the next block, then restores glibc's defaults and gives the free heap back (`malloc_trim`).

    By default glibc maps every block of 32 MB or more (every numpy array of 4M int64s) straight from the system
    and unmaps it when freed, so each such array is zeroed page by page by the kernel again. Kept in the heap,
    the next array of the run reuses those pages: at 10M links `resolve` touched 1.9M pages instead of 2.6M and
    spent 3.5-5.4 s in the kernel instead of 4.7-7.4 s. Nothing changes where the caller set malloc tunables
    (GLIBC_TUNABLES) or without glibc. (Once set, glibc stops sliding its mmap threshold with the sizes it sees;
    the threshold stays where it was.)
    """

    @functools.wraps(function)
    def run(*args, **kwargs):
        if _glibc() is None or _caller_tuned_malloc():
            return function(*args, **kwargs)
        with _KEPT_HEAP:
            return function(*args, **kwargs)

    return run


def _keep_heap() -> None:
    libc = _glibc()
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED)


def _default_heap(_) -> None:
    libc = _glibc()
    libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
    libc.malloc_trim(0)


_KEPT_HEAP = _HeldSetting(_keep_heap, _default_heap)

# prctl options (linux/prctl.h): transparent huge pages off for the calling process and its later children
_PR_SET_THP_DISABLE, _PR_GET_THP_DISABLE = 41, 42


@functools.cache
def _prctl():
    """prctl(option, value) of the C library (its other arguments zero, every one passed as the unsigned long the
    kernel reads), or None off Linux, where there are no transparent huge pages to turn off."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.restype = ctypes.c_int

    def call(option: int, value: int = 0) -> int:
        zero = ctypes.c_ulong(0)
        return prctl(ctypes.c_int(option), ctypes.c_ulong(value), zero, zero, zero)

    return call


def transparent_hugepages_disabled() -> bool | None:
    """Whether Linux's transparent huge pages are off for this process; None where that cannot be asked."""
    prctl = _prctl()
    if prctl is None:
        return None
    answer = prctl(_PR_GET_THP_DISABLE)
    return None if answer < 0 else bool(answer)


def set_transparent_hugepages_disabled(disabled: bool) -> bool:
    """Turns Linux's transparent huge pages off (or back on) for this process and its later children; False
    where that was refused or cannot be done."""
    prctl = _prctl()
    return prctl is not None and prctl(_PR_SET_THP_DISABLE, int(disabled)) == 0


def _disable_thp() -> bool | None:
    found = transparent_hugepages_disabled()
    if found is False:
        set_transparent_hugepages_disabled(True)
    return found


def _restore_thp(found: bool | None) -> None:
    if found is False:
        set_transparent_hugepages_disabled(False)


_NO_THP = _HeldSetting(_disable_thp, _restore_thp)


def without_transparent_hugepages(function):
    """Runs `function` with Linux's transparent huge pages off for the whole process (every allocator in it:
    numpy's, polars', DuckDB's), and puts the process's setting back after.

    On the virtual machines this is measured on, the host takes back memory the guest has freed, 2 MB at a time,
    and a huge page it has taken back costs about 10 s per GB to fill again, against 0.5 s for the first GBs of
    4 KB pages (2026-12-07, a fresh process filling 1 GB after a few seconds' pause, alternating).
    `resolve_out_of_core` at 10M links took 700-830 huge pages in its DuckDB phases and spent 12.1-13.3 s in the
    kernel, against 5.7 s with them off; 28.6-30.7 s against 24.9-25.1 s in all (three alternating pairs). Where
    huge pages are cheap they save TLB misses on random access, but the union-find kernel's arrays are numpy's,
    which ran without them already (`without_numpy_hugepages`). Where prctl is refused (a sandbox) or absent,
    nothing changes.
    """

    @functools.wraps(function)
    def run(*args, **kwargs):
        with _NO_THP:
            return function(*args, **kwargs)

    return run


def without_numpy_hugepages(function):
    """Runs `function` with numpy's transparent huge pages off, and puts numpy's setting back after.

    numpy asks Linux for huge pages (madvise) for every array of 4 MB or more. On this 2-core machine, after some
    hours of large runs, the kernel's time with them grew to most of some phases: `resolve` at 10M links took
    22.0 and 22.3 s with them, 14.6 and 15.2 s without (alternating, 2026-12-07; 13.8 s with them earlier the same
    session), and the out-of-core integers phase at 30M 18.5-20.0 s (17-18 s of it in the kernel) against 7.4-7.5
    s. (At 100M the one out-of-core run without them was no faster; the machine had slowed further by then.)
    numpy's own switch is the NUMPY_MADVISE_HUGEPAGE environment variable, read once at import; this is its
    runtime form (a no-op where numpy has none).
    """
    setter = getattr(getattr(getattr(np, "_core", None), "multiarray", None), "_set_madvise_hugepage", None)

    @functools.wraps(function)
    def run(*args, **kwargs):
        if setter is None:
            return function(*args, **kwargs)
        previous = setter(False)
        try:
            return function(*args, **kwargs)
        finally:
            setter(previous)

    return run


def for_large_arrays(function):
    """The three settings above around `function`."""
    return reusing_freed_heap(without_transparent_hugepages(without_numpy_hugepages(function)))
