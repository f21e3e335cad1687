"""A missing dbt adapter is named with its install command (the builds:
tests/integration/test_dbt_runner.py)."""

from __future__ import annotations

import pytest

from pipelines.dbt_runner import DbtFailed, require_dbt


def test_a_missing_dbt_adapter_is_named_with_the_install_command() -> None:
    with pytest.raises(DbtFailed, match=r"pip install 'dbt-core>=1.11,<1.12' dbt-nosuchwarehouse"):
        require_dbt("nosuchwarehouse")
    require_dbt("duckdb")
