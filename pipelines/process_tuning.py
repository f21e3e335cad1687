"""How a process that runs the connector and nothing else is tuned: allocators and imports.

Everything here applies to the whole process, so the source never does it: importing the source
must not change someone else's process (an Airflow or Dagster worker). The entry points that own
their process call `tune_process` once, first thing: `pipelines/polyai_pipeline.py` run as a
command, and the benchmark's pipeline runs (`scripts/bench.py`). The allocator tuning applies on
Linux with glibc only. docs/performance.md has what each part saves.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import sys

from pipelines.lean_imports import keep_unused_libraries_unloaded

# glibc's M_MMAP_THRESHOLD parameter, and the size from which buffers get their own mapping.
_M_MMAP_THRESHOLD = -3
LARGE_BUFFER_BYTES = 1024 * 1024
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def tune_process() -> None:
    """Tunes this process for the connector's runs; call it before anything imports pyarrow.

    Arrow on glibc's malloc, buffers of 1 MB or more mapped on their own, the memory freed by
    each extraction given back to the OS before its load, and pandas and SQLAlchemy kept out
    (lean_imports). A choice the process made already (pyarrow loaded, ARROW_DEFAULT_MEMORY_POOL
    set, pandas imported) is kept.
    """
    prefer_malloc_for_arrow()
    return_large_buffers_to_os()
    # Not at the top: the source's package loads pyarrow, whose allocator is chosen above.
    from sources.polyai import allocators

    allocators.after_extraction(release_freed_memory)
    keep_unused_libraries_unloaded()


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
    reuse in every thread that allocated. Arrow reads its choice once, when pyarrow is loaded,
    and its Parquet writer allocates through that choice whatever pyarrow is told later
    (`pyarrow.set_memory_pool` changes only the pool of pyarrow's own Python calls), so the
    variable must be set before pyarrow is imported. Without effect when pyarrow is already
    loaded or ARROW_DEFAULT_MEMORY_POOL is set.
    """
    if _glibc() is None or "pyarrow" in sys.modules or ARROW_POOL_VARIABLE in os.environ:
        return False
    os.environ[ARROW_POOL_VARIABLE] = "system"
    return True


@functools.cache
def return_large_buffers_to_os() -> bool:
    """Make glibc give every buffer of 1 MB or more its own mapping, unmapped when freed.

    Raw page bodies are several MB each. glibc raises its mmap threshold after the first such
    buffer is freed, so later ones come from the worker threads' heaps, which keep the memory
    after it is freed; the cost of a fixed threshold is one mmap per large buffer.
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
    in this process) would add its own on top.
    """
    import pyarrow as pa  # not at the top: see prefer_malloc_for_arrow

    pa.default_memory_pool().release_unused()
    libc = _glibc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)
