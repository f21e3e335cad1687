"""What a fresh interpreter's process looks like, read from inside it (for tests that import in one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Whether glibc's mmap threshold is fixed (mallopt M_MMAP_THRESHOLD) rather than dynamic: once a
# mapped buffer is freed, a dynamic threshold rises above its size, so the next smaller buffer
# comes from the heap; a fixed one maps it too. mallinfo2's hblks counts the mapped buffers.
MMAP_THRESHOLD_PROBE = """
import ctypes

class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

def mmap_threshold_fixed():
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(libc.malloc(4 << 20))
    before = libc.mallinfo2().hblks
    buffer = libc.malloc(3 << 20)
    mapped = libc.mallinfo2().hblks > before
    libc.free(buffer)
    return mapped
"""


def fresh_interpreter(code: str, env: dict[str, str] | None = None) -> Any:
    """The JSON that `code` prints last, run by a fresh interpreter in the repository's folder."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
