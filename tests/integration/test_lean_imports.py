"""The command keeps pandas and SQLAlchemy out of its process without breaking either."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pandas") is None or importlib.util.find_spec("sqlalchemy") is None,
    reason="pandas and SQLAlchemy must be installed for their import to be avoidable",
)

CONNECTION_STRING = "postgresql://us%40er:p%3Aw@db.example.com:5433/warehouse?sslmode=require"


def run_fresh(code: str) -> dict:
    """What `code` prints as JSON, run in a fresh interpreter after the command's start-up."""
    script = (
        "import json, sys\n"
        "import pipelines.polyai_pipeline\n"
        "from pipelines.lean_imports import keep_unused_libraries_unloaded\n" + code
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_arrays_and_connection_strings_need_neither_library() -> None:
    seen = run_fresh(
        "kept_out = keep_unused_libraries_unloaded()\n"
        "import pyarrow as pa\n"
        "from dlt.common.configuration.specs import ConnectionStringCredentials\n"
        "pa.table({'a': pa.array(['x', None]), 'b': pa.array([1.5, None])})\n"
        f"url = ConnectionStringCredentials({CONNECTION_STRING!r})\n"
        "loaded = sorted({'pandas', 'sqlalchemy'} & set(sys.modules))\n"
        "print(json.dumps({'kept_out': kept_out, 'loaded': loaded,"
        " 'url': [url.username, url.password, url.host, url.port, url.database, url.query]}))"
    )
    assert seen["kept_out"] == ["pandas", "sqlalchemy"]
    assert seen["loaded"] == []
    # dlt's own parser reads a connection string as SQLAlchemy's does.
    assert seen["url"] == ["us@er", "p:w", "db.example.com", 5433, "warehouse", {"sslmode": "require"}]


def test_pandas_conversions_still_work_afterwards() -> None:
    seen = run_fresh(
        "keep_unused_libraries_unloaded()\n"
        "import pyarrow as pa\n"
        "frame = pa.table({'a': [1.0, None]}).to_pandas()\n"
        "import pandas as pd\n"
        # A pandas NaN is a null only when pyarrow recognises the Series as pandas.
        "series = pa.array(pd.Series([1.0, float('nan')]))\n"
        "back = pa.Table.from_pandas(pd.DataFrame({'x': ['y']}))\n"
        "print(json.dumps({'frame': frame['a'].isna().tolist(), 'nulls': series.null_count,"
        " 'back': back.column('x').to_pylist()}))"
    )
    assert seen == {"frame": [False, True], "nulls": 1, "back": ["y"]}


def test_a_process_that_already_uses_pandas_keeps_it() -> None:
    seen = run_fresh(
        "import pandas as pd\n"
        "kept_out = keep_unused_libraries_unloaded()\n"
        "import pyarrow as pa\n"
        "nulls = pa.array(pd.Series([1.0, float('nan')])).null_count\n"
        "print(json.dumps({'kept_out': kept_out, 'nulls': nulls}))"
    )
    assert "pandas" not in seen["kept_out"]
    assert seen["nulls"] == 1
