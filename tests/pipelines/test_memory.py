"""release_free_memory finds glibc's malloc_trim where there is one."""

import platform

import pytest

from pipelines.memory import release_free_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's; elsewhere a no-op")
def test_release_free_memory_calls_malloc_trim_on_glibc():
    assert release_free_memory() is True
