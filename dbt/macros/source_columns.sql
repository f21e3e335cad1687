{#-
  dlt adds a column to a table the first time a load carries a value for it, so a dataset
  may lack optional columns (`latency_detail` until the API sends latency as an object,
  `latency` without include_latency, ...). Staging models read optional columns through
  `optional_column`, which falls back to a typed NULL when the column does not exist.
-#}

{#- Lower-cased names of the relation's columns, or none when introspection is off
    (var polyai_introspect_sources=false) or dbt is only parsing. -#}
{% macro existing_columns(relation) -%}
    {%- if not execute or not var('polyai_introspect_sources', true) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set names = [] -%}
    {%- for column in adapter.get_columns_in_relation(relation) -%}
        {%- do names.append(column.name | lower) -%}
    {%- endfor -%}
    {{ return(names) }}
{%- endmacro %}

{#- The column `name` (lower case) when it is one of `existing` or `existing` is none,
    else CAST(NULL AS data_type). An expression, without alias. -#}
{% macro optional_column(existing, name, data_type) -%}
    {%- if existing is none or name in existing -%}
        {{ name }}
    {%- else -%}
        cast(null as {{ data_type }})
    {%- endif -%}
{%- endmacro %}
