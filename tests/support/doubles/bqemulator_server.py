"""Starts bqemulator (a BigQuery emulator on DuckDB) without its DuckDB `spatial` extension.

Run with the emulator's own virtualenv (see tests/support/destination_doubles.py), arguments as
`bqemulator`'s (`start --rest-port ...`). bqemulator downloads `spatial` at start-up for
GEOGRAPHY columns; the connector writes none, and the tests must not need the network.
(The other adjustment, one ADD COLUMN per ALTER TABLE, is dlt's `alter_add_multi_column=False`
capability passed by the test.)
"""

from __future__ import annotations

import sys

from bqemulator.cli import main
from bqemulator.storage import engine


def skip_spatial_extension(self: engine.DuckDBEngine) -> None:
    """GEOGRAPHY functions stay unavailable; nothing the connector writes uses them."""


if __name__ == "__main__":
    engine.DuckDBEngine._load_spatial = skip_spatial_extension  # type: ignore[method-assign]
    main(sys.argv[1:])
