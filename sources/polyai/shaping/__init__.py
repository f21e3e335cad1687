"""Pages into rows: the typed fast path to Arrow, JSON rows, v1 pages brought to v3, privacy options."""
