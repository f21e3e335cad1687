"""Which allocators the extraction uses, so that memory freed while streaming goes back to the OS.

Importing this module picks Arrow's allocator: Arrow reads that choice once, when pyarrow
is first loaded, so the package imports this module before anything imports pyarrow.
Everything here applies to the whole process and only on Linux with glibc.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import sys

# glibc's M_MMAP_THRESHOLD parameter, and the size from which buffers get their own mapping.
_M_MMAP_THRESHOLD = -3
LARGE_BUFFER_BYTES = 1024 * 1024
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc, loaded once (`platform.libc_ver` reads the interpreter's file); None elsewhere."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def prefer_malloc_for_arrow() -> bool:
    """Make Arrow allocate with glibc's malloc, unless the process chose otherwise.

    Arrow's default allocator in the pyarrow wheels (mimalloc) keeps the pages it freed for
    reuse in every thread that allocated; the Parquet writer allocates through it whatever
    pyarrow is told later. With malloc (and the threshold of `return_large_buffers_to_os`),
    the extraction of 10k conversations peaked at ~236 MB instead of ~265 MB, and a 100k
    backfill at ~330 MB instead of ~370 MB, at the same speed (A/B at the same moment).
    Without effect when pyarrow is already loaded or ARROW_DEFAULT_MEMORY_POOL is set.
    """
    if _glibc() is None or "pyarrow" in sys.modules or ARROW_POOL_VARIABLE in os.environ:
        return False
    os.environ[ARROW_POOL_VARIABLE] = "system"
    return True


@functools.cache
def return_large_buffers_to_os() -> bool:
    """Make glibc give every buffer of 1 MB or more its own mapping, unmapped when freed.

    Raw page bodies are ~5 MB each. glibc raises its mmap threshold after the first such
    buffer is freed, so later ones come from the worker threads' heaps, which keep the memory
    after it is freed. At 100k conversations with 4 connections a fixed threshold took the
    extraction's peak RSS from ~350 to ~305 MB, and what the process keeps for the load step
    from ~345 to ~265 MB; the cost is one mmap per large buffer. Elsewhere than glibc this
    does nothing.
    """
    libc = _glibc()
    if libc is None:
        return False
    try:
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES))
    except AttributeError:
        return False


def release_freed_memory() -> None:
    """Give the memory freed by the extraction back to the OS before the load step needs it.

    Arrow's allocator and glibc's heaps keep freed memory for reuse; the load step (DuckDB,
    in this process) would add its own on top. At 100k conversations this took what the
    process holds after extracting from ~272 to ~232 MB.
    """
    import pyarrow as pa  # not at the top: see prefer_malloc_for_arrow

    pa.default_memory_pool().release_unused()
    libc = _glibc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)


prefer_malloc_for_arrow()
