{#-
  JSON helpers: the only place where DuckDB (JSON), BigQuery (JSON) and Snowflake (VARIANT)
  differ in how a nested value is read. Models call the `polyai.*` macro; dbt dispatches to
  `<adapter>__<name>` (duckdb, bigquery, snowflake; `default__` raises for anything else).

  Unnesting macros render a *join clause* that goes right after the FROM item or after another
  unnesting clause. Snowflake's is the comma form `, lateral flatten(...)`, so keep them in a CTE
  of their own, with no explicit JOIN after them. They expose fixed column names on `alias`:
    json_array_elements(expr, alias)  -> alias.value (JSON element), alias.index (0-based)
    json_object_entries(expr, alias)  -> alias.key (string), alias.value (JSON value)
  A NULL, JSON null or wrongly-shaped input yields no rows instead of an error.
-#}

{% macro json_array_elements(json_expr, alias) -%}
    {{ return(adapter.dispatch('json_array_elements', 'polyai')(json_expr, alias)) }}
{%- endmacro %}

{% macro default__json_array_elements(json_expr, alias) -%}
    {{ exceptions.raise_compiler_error("polyai.json_array_elements has no implementation for " ~ adapter.type()) }}
{%- endmacro %}

{% macro duckdb__json_array_elements(json_expr, alias) -%}
    cross join lateral (
        select
            unnest(elements) as value,
            generate_subscripts(elements, 1) - 1 as index
        from (
            select cast(case when json_type({{ json_expr }}) = 'ARRAY' then {{ json_expr }} end as json[]) as elements
        )
    ) as {{ alias }}
{%- endmacro %}

{% macro bigquery__json_array_elements(json_expr, alias) -%}
    cross join unnest(array(
        select as struct element as value, element_offset as index
        from unnest(json_query_array({{ json_expr }})) as element with offset as element_offset
    )) as {{ alias }}
{%- endmacro %}

{% macro snowflake__json_array_elements(json_expr, alias) -%}
    {#- FLATTEN already names its columns VALUE and INDEX; comma + LATERAL is Snowflake's documented form. -#}
    , lateral flatten(input => case when is_array({{ json_expr }}) then {{ json_expr }} end) as {{ alias }}
{%- endmacro %}


{% macro json_object_entries(json_expr, alias) -%}
    {{ return(adapter.dispatch('json_object_entries', 'polyai')(json_expr, alias)) }}
{%- endmacro %}

{% macro default__json_object_entries(json_expr, alias) -%}
    {{ exceptions.raise_compiler_error("polyai.json_object_entries has no implementation for " ~ adapter.type()) }}
{%- endmacro %}

{% macro duckdb__json_object_entries(json_expr, alias) -%}
    {#- A MAP cast keeps keys verbatim: json_keys() + `->` would read a key such as "$a.b" as a path. -#}
    cross join lateral (
        select
            unnest(map_keys(entries)) as key,
            unnest(map_values(entries)) as value
        from (
            select cast(case when json_type({{ json_expr }}) = 'OBJECT' then {{ json_expr }} end as map(varchar, json)) as entries
        )
    ) as {{ alias }}
{%- endmacro %}

{% macro bigquery__json_object_entries(json_expr, alias) -%}
    {#- JSON_KEYS(..., 1) lists the top-level keys; the subscript operator reads each one by name.
        Not run here (compiled only). JSON_KEYS escapes keys that are not plain names (e.g.
        containing a dot) with double quotes: the lookup of such a key misses and its values are skipped. -#}
    cross join unnest(array(
        select as struct entry_key as key, ({{ json_expr }})[entry_key] as value
        from unnest(json_keys({{ json_expr }}, 1)) as entry_key
    )) as {{ alias }}
{%- endmacro %}

{% macro snowflake__json_object_entries(json_expr, alias) -%}
    , lateral flatten(input => case when is_object({{ json_expr }}) then {{ json_expr }} end) as {{ alias }}
{%- endmacro %}


{#- A JSON scalar as text: strings without their quotes, numbers and booleans as written,
    arrays and objects as JSON text, JSON null as SQL NULL. -#}
{% macro json_to_string(json_expr) -%}
    {{ return(adapter.dispatch('json_to_string', 'polyai')(json_expr)) }}
{%- endmacro %}

{% macro default__json_to_string(json_expr) -%}
    cast({{ json_expr }} as {{ dbt.type_string() }})
{%- endmacro %}

{% macro duckdb__json_to_string(json_expr) -%}
    json_extract_string({{ json_expr }}, '$')
{%- endmacro %}

{% macro bigquery__json_to_string(json_expr) -%}
    coalesce(json_value({{ json_expr }}), case when json_type({{ json_expr }}) != 'null' then to_json_string({{ json_expr }}) end)
{%- endmacro %}

{% macro snowflake__json_to_string(json_expr) -%}
    {#- TO_VARCHAR of a VARIANT string drops the quotes; of an object/array it is JSON text. -#}
    case when not is_null_value({{ json_expr }}) then to_varchar({{ json_expr }}) end
{%- endmacro %}


{#- The value itself when it is a JSON array, else a one-element array holding it (NULL stays NULL),
    so "a string, or a list of strings" unnests the same way. -#}
{% macro json_as_array(json_expr) -%}
    {{ return(adapter.dispatch('json_as_array', 'polyai')(json_expr)) }}
{%- endmacro %}

{% macro default__json_as_array(json_expr) -%}
    {{ exceptions.raise_compiler_error("polyai.json_as_array has no implementation for " ~ adapter.type()) }}
{%- endmacro %}

{% macro duckdb__json_as_array(json_expr) -%}
    case
        when json_type({{ json_expr }}) = 'ARRAY' then {{ json_expr }}
        when {{ json_expr }} is not null then json_array({{ json_expr }})
    end
{%- endmacro %}

{% macro bigquery__json_as_array(json_expr) -%}
    case
        when json_type({{ json_expr }}) = 'array' then {{ json_expr }}
        when {{ json_expr }} is not null then json_array({{ json_expr }})
    end
{%- endmacro %}

{% macro snowflake__json_as_array(json_expr) -%}
    case
        when is_array({{ json_expr }}) then {{ json_expr }}
        when {{ json_expr }} is not null then to_variant(array_construct({{ json_expr }}))
    end
{%- endmacro %}


{#- Number of elements of a JSON array; NULL when the value is not an array. -#}
{% macro json_array_length(json_expr) -%}
    {{ return(adapter.dispatch('json_array_length', 'polyai')(json_expr)) }}
{%- endmacro %}

{% macro default__json_array_length(json_expr) -%}
    {{ exceptions.raise_compiler_error("polyai.json_array_length has no implementation for " ~ adapter.type()) }}
{%- endmacro %}

{% macro duckdb__json_array_length(json_expr) -%}
    case when json_type({{ json_expr }}) = 'ARRAY' then json_array_length({{ json_expr }}) end
{%- endmacro %}

{% macro bigquery__json_array_length(json_expr) -%}
    array_length(json_query_array({{ json_expr }}))
{%- endmacro %}

{% macro snowflake__json_array_length(json_expr) -%}
    case when is_array({{ json_expr }}) then array_size({{ json_expr }}) end
{%- endmacro %}


{#- SQL type of a JSON column, for typed NULLs. -#}
{% macro type_json() -%}
    {{ return(adapter.dispatch('type_json', 'polyai')()) }}
{%- endmacro %}

{% macro default__type_json() -%}
    json
{%- endmacro %}

{% macro snowflake__type_json() -%}
    variant
{%- endmacro %}
