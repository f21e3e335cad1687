"""Keep the command's process from importing pandas and SQLAlchemy, which no load here uses.

Both come with optional extras (pandas with BigQuery's, SQLAlchemy with Dagster) and both
got imported by every run that merely found them installed, for one question each:
- `pyarrow.array()` asks once per process whether pandas is installed (to recognise a pandas
  Series), which costs memory and start-up time (docs/performance.md). pyarrow remembers the
  answer of that first, silent probe; answered while `import pandas` is refused, it is "no
  pandas", true for as long as nothing imports pandas. pyarrow's conversions to and from
  pandas (`to_pandas`, `from_pandas`) import it again themselves and work as before.
- dlt parses connection strings with SQLAlchemy's URL parser when SQLAlchemy is installed and
  with its own copy of it otherwise (`dlt.common.libs.sql_alchemy_compat`), and parses even
  DuckDB's file path that way. Imported while SQLAlchemy is refused, that module keeps dlt's
  own parser, as in an install without SQLAlchemy.

A command owns its process, so `pipelines/polyai_pipeline.py` does this at start-up
(`process_tuning.tune_process`). The source does not: importing it must not change how
pyarrow treats pandas objects in someone else's process (an Airflow or Dagster worker that
hands a Series to `pyarrow.array`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import sys
from collections.abc import Iterator, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

DLT_URL_PARSER = "dlt.common.libs.sql_alchemy_compat"


class _Refuse(importlib.abc.MetaPathFinder):
    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] == self.package:
            raise ModuleNotFoundError(f"{self.package} is not imported by this command", name=fullname)
        return None


@contextlib.contextmanager
def _refused(package: str) -> Iterator[None]:
    finder = _Refuse(package)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def keep_unused_libraries_unloaded() -> list[str]:
    """Settle pyarrow's and dlt's questions without importing; the libraries kept out of the process.

    A library already imported stays as it is (so does pyarrow's answer once given: pyarrow
    asks on its first array, and asking imports pandas).
    """
    # An ImportError here (another pyarrow or dlt than the pinned ones) only means the library
    # may be imported later, as without this.
    if "pandas" not in sys.modules:
        import pyarrow as pa  # after Arrow's allocator is chosen: see process_tuning.py

        with _refused("pandas"), contextlib.suppress(ImportError):
            pa.array([])  # the probe: pyarrow.array checks for pandas objects first
    if "sqlalchemy" not in sys.modules and DLT_URL_PARSER not in sys.modules:
        with _refused("sqlalchemy"), contextlib.suppress(ImportError):
            importlib.import_module(DLT_URL_PARSER)
    return [package for package in ("pandas", "sqlalchemy") if package not in sys.modules]


@contextlib.contextmanager
def loading_without_pandas() -> Iterator[None]:
    """Refuses `import pandas` while a load runs, unless something already imported it.

    DuckDB 1.x's Python client tries `import pandas` on every query with parameters (to see if
    a value is a DataFrame) and takes an ImportError as "no DataFrame". A probe cannot settle it
    once, as for pyarrow: DuckDB asks again each time. Nothing in a load uses pandas; dbt, after
    the load, may import it.
    """
    if "pandas" in sys.modules:
        yield
        return
    with _refused("pandas"):
        yield
