{#-
  on-run-start hook: stop with a clear message when the connector's tables are not where the
  profile points (typically POLYAI_DUCKDB_PATH, or a wrong schema), instead of failing later
  on the first model with "table does not exist". Skipped with
  --vars '{polyai_introspect_sources: false}' (compiling without a warehouse connection).
-#}
{% macro check_source_tables() %}
    {%- if execute and var('polyai_introspect_sources', true) -%}
        {%- set missing = [] -%}
        {%- for table in ['conversations', 'turns', '_polyai_runs', '_dlt_loads'] -%}
            {%- set declared = source('polyai', table) -%}
            {%- set found = adapter.get_relation(
                database=declared.database, schema=declared.schema, identifier=declared.identifier
            ) -%}
            {%- if found is none -%}
                {%- do missing.append(declared | string) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if missing -%}
            {%- set where = target.path if target.type == 'duckdb' else target.database -%}
            {{ exceptions.raise_compiler_error(
                "PolyAI source table(s) " ~ missing | join(', ') ~ " not found in " ~ where ~ ". Load "
                ~ "them first (python pipelines/polyai_pipeline.py [--demo]) and point the profile at them: "
                ~ "POLYAI_DUCKDB_PATH for DuckDB, POLYAI_SCHEMA / --vars '{polyai_schema: ...}' for the dataset."
            ) }}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}
