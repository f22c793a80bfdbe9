"""identity.memory: large arrays come from glibc's heap while resolving (not mapped and unmapped one by one), and
glibc's defaults are back after; nothing changes where the caller tuned malloc or where there is no glibc. numpy's
huge pages, and Linux's transparent huge pages for the whole process, are off while resolving and back after."""

import ctypes
import platform

import numpy as np
import polars as pl
import pytest

import identity.memory as memory
import identity.resolution as resolution

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the malloc settings are glibc's")

LARGE = 8 * 2**20  # int64s: 64 MB, twice the largest block glibc ever serves from its heap by default


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]


def _mapped_bytes() -> int:
    """Bytes glibc holds in blocks mapped on their own (mallinfo2's hblkhd)."""
    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = _MallInfo2
    return mallinfo2().hblkhd


def _is_mapped_on_its_own() -> bool:
    before = _mapped_bytes()
    array = np.ones(LARGE, dtype=np.int64)
    mapped = _mapped_bytes() - before >= array.nbytes
    del array
    return mapped


@glibc_only
def test_large_arrays_come_from_the_heap_inside_and_are_mapped_again_after(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    inside = memory.reusing_freed_heap(_is_mapped_on_its_own)
    assert _is_mapped_on_its_own()  # glibc's default
    assert inside() is False
    assert _is_mapped_on_its_own()  # the default is back


@glibc_only
def test_nested_and_failing_calls_restore_the_defaults_once_the_outermost_ends(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    seen = []

    @memory.reusing_freed_heap
    def inner():
        seen.append(_is_mapped_on_its_own())
        raise KeyError("boom")

    @memory.reusing_freed_heap
    def outer():
        with pytest.raises(KeyError):
            inner()
        seen.append(_is_mapped_on_its_own())  # still the outer call's setting

    outer()
    assert seen == [False, False]
    assert _is_mapped_on_its_own()


@glibc_only
def test_a_caller_who_tuned_malloc_keeps_their_settings(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert memory.reusing_freed_heap(_is_mapped_on_its_own)() is True


def _seen_inside_resolve(monkeypatch, probe) -> list:
    """What `probe()` returned while `resolve` ran (called as it normalizes), for a one-record input."""
    seen = []
    normalize = resolution.normalize_observations

    def watching(*args, **kwargs):
        seen.append(probe())
        return normalize(*args, **kwargs)

    monkeypatch.setattr(resolution, "normalize_observations", watching)
    observation = {"source": "crm", "record_id": "c1", "id_type": "phone", "scope": "", "id_value": "13912345678"}
    assert resolution.resolve(pl.DataFrame([observation])).stats["users"] == 1
    return seen


@glibc_only
def test_resolve_runs_with_the_heap_kept(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    seen = _seen_inside_resolve(monkeypatch, _is_mapped_on_its_own)
    assert seen == [False] and _is_mapped_on_its_own()


@pytest.mark.skipif(not hasattr(np._core.multiarray, "_set_madvise_hugepage"), reason="numpy without the switch")
def test_numpy_hugepages_are_off_while_resolving_and_back_after(monkeypatch):
    setter = np._core.multiarray._set_madvise_hugepage
    before = setter(True)
    try:
        # the setter returns the setting in force before it, so setting False reads it
        seen = _seen_inside_resolve(monkeypatch, lambda: setter(False))
        assert seen == [False] and setter(True) is True  # off inside, back on after
    finally:
        setter(before)


@glibc_only
def test_malloc_trim_reports_glibc():
    assert memory.malloc_trim() is True


linux_thp = pytest.mark.skipif(
    memory.transparent_hugepages_disabled() is None, reason="no prctl for transparent huge pages here"
)


def _set_thp_disabled(disabled: bool) -> None:
    assert memory.set_transparent_hugepages_disabled(disabled)
    assert memory.transparent_hugepages_disabled() is disabled


@linux_thp
def test_transparent_hugepages_are_off_while_resolving_and_back_after(monkeypatch):
    before = memory.transparent_hugepages_disabled()
    _set_thp_disabled(False)
    try:
        seen = _seen_inside_resolve(monkeypatch, memory.transparent_hugepages_disabled)
        assert seen == [True] and memory.transparent_hugepages_disabled() is False
    finally:
        _set_thp_disabled(before)


@linux_thp
def test_a_process_that_turned_huge_pages_off_itself_keeps_them_off():
    before = memory.transparent_hugepages_disabled()
    _set_thp_disabled(True)
    try:
        assert memory.without_transparent_hugepages(memory.transparent_hugepages_disabled)() is True
        assert memory.transparent_hugepages_disabled() is True
    finally:
        _set_thp_disabled(before)


@linux_thp
def test_huge_pages_come_back_only_when_the_outermost_of_nested_and_failing_calls_ends():
    before = memory.transparent_hugepages_disabled()
    _set_thp_disabled(False)
    seen = []

    @memory.without_transparent_hugepages
    def inner():
        seen.append(memory.transparent_hugepages_disabled())
        raise KeyError("boom")

    @memory.without_transparent_hugepages
    def outer():
        with pytest.raises(KeyError):
            inner()
        seen.append(memory.transparent_hugepages_disabled())  # still the outer call's setting

    try:
        outer()
        assert seen == [True, True] and memory.transparent_hugepages_disabled() is False
    finally:
        _set_thp_disabled(before)
