{#-
  Aggregates and types without a dbt cross-database macro.
-#}

{#- Continuous percentile as an aggregate (use with GROUP BY); `fraction` is a number in [0, 1].
    BigQuery has PERCENTILE_CONT only as a window function, so there the aggregate is
    APPROX_QUANTILES over 1000 quantiles (approximate, to about 0.1 percentile, which is enough
    for p50/p90/p99); SAFE_OFFSET gives NULL for a group with only NULL values. -#}
{% macro percentile(expr, fraction) -%}
    {{ return(adapter.dispatch('percentile', 'polyai')(expr, fraction)) }}
{%- endmacro %}

{% macro default__percentile(expr, fraction) -%}
    percentile_cont({{ fraction }}) within group (order by {{ expr }})
{%- endmacro %}

{% macro duckdb__percentile(expr, fraction) -%}
    quantile_cont({{ expr }}, {{ fraction }})
{%- endmacro %}

{% macro bigquery__percentile(expr, fraction) -%}
    approx_quantiles({{ expr }}, 1000)[safe_offset({{ (fraction * 1000) | round | int }})]
{%- endmacro %}

{% macro snowflake__percentile(expr, fraction) -%}
    percentile_cont({{ fraction }}) within group (order by {{ expr }})
{%- endmacro %}


{#- numerator / denominator as a double, NULL when the denominator is 0. -#}
{% macro safe_ratio(numerator, denominator) -%}
    cast({{ numerator }} as {{ polyai.type_double() }}) / nullif({{ denominator }}, 0)
{%- endmacro %}


{#- 64-bit float (dbt.type_float() is a 32-bit FLOAT on DuckDB). -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'polyai')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}

{% macro duckdb__type_double() -%}
    double
{%- endmacro %}

{% macro bigquery__type_double() -%}
    float64
{%- endmacro %}

{% macro snowflake__type_double() -%}
    double
{%- endmacro %}
