"""dlt sources of this project (one package per source, as in dlt's verified sources)."""
