"""Arrow's allocator is picked when the package is imported first, and a choice already made is kept."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the allocators are only tuned on Linux with glibc",
)


def arrow_pool_after(code: str, **env: str) -> str:
    """The backend of Arrow's default pool in a fresh interpreter that runs `code` first."""
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    script = f"{code}\nimport pyarrow as pa\nprint(pa.default_memory_pool().backend_name)"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_importing_the_source_makes_arrow_allocate_with_malloc() -> None:
    assert arrow_pool_after("import sources.polyai") == "system"
    # What the command imports before the source must not load pyarrow first.
    assert arrow_pool_after("import pipelines.polyai_pipeline") == "system"


def test_an_allocator_chosen_by_the_user_is_kept() -> None:
    assert arrow_pool_after("import sources.polyai", ARROW_DEFAULT_MEMORY_POOL="mimalloc") == "mimalloc"


def test_pyarrow_loaded_before_the_source_keeps_its_allocator() -> None:
    assert arrow_pool_after("import pyarrow\nimport sources.polyai") == arrow_pool_after("")
