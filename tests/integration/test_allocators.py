"""Arrow's allocator and glibc's mmap threshold are tuned by the opt-in tuning, before pyarrow loads,
and a choice already made is kept. Importing the source alone tunes nothing (test_import_side_effects)."""

from __future__ import annotations

import os
import platform

import pytest

from tests.support.process_probes import MMAP_THRESHOLD_PROBE, ROOT, fresh_interpreter

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the allocators are only tuned on Linux with glibc",
)

TUNED = "from pipelines.process_tuning import tune_process\ntune_process()"
# The command's own start-up: the script run as __main__, up to its arguments (--help ends it).
COMMAND = (
    "import runpy, sys\n"
    f"sys.argv = [{str(ROOT / 'pipelines' / 'polyai_pipeline.py')!r}, '--help']\n"
    "try:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass"
)


def arrow_pool_after(code: str, **env: str) -> str:
    """The backend of Arrow's default pool in a fresh interpreter that runs `code` first."""
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    script = f"{code}\nimport json, pyarrow\nprint(json.dumps(pyarrow.default_memory_pool().backend_name))"
    return str(fresh_interpreter(script, {**environment, **env}))


def mmap_threshold_fixed_after(code: str) -> bool:
    return bool(fresh_interpreter(f"{MMAP_THRESHOLD_PROBE}\n{code}\nprint(int(mmap_threshold_fixed()))"))


def test_tuning_makes_arrow_allocate_with_malloc() -> None:
    assert arrow_pool_after(TUNED) == "system"
    # The command tunes before its imports load pyarrow.
    assert arrow_pool_after(COMMAND) == "system"


def test_an_allocator_chosen_by_the_user_is_kept() -> None:
    assert arrow_pool_after(TUNED, ARROW_DEFAULT_MEMORY_POOL="mimalloc") == "mimalloc"


def test_pyarrow_loaded_before_the_tuning_keeps_its_allocator() -> None:
    assert arrow_pool_after(f"import pyarrow\n{TUNED}") == arrow_pool_after("")


def test_tuning_fixes_the_mmap_threshold() -> None:
    assert mmap_threshold_fixed_after(TUNED)
    assert mmap_threshold_fixed_after(COMMAND)
    assert not mmap_threshold_fixed_after("import sources.polyai")


def test_tuning_hands_memory_back_after_each_extraction() -> None:
    hooked = fresh_interpreter(
        "import json\nfrom sources.polyai import allocators\nuntuned = list(allocators._after_extraction)\n"
        f"{TUNED}\n{TUNED}\n"
        "print(json.dumps([untuned, [f.__name__ for f in allocators._after_extraction]]))"
    )
    assert hooked == [[], ["release_freed_memory"]]
