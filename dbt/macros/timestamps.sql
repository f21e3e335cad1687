{#-
  The connector writes UTC instants (TIMESTAMP WITH TIME ZONE on DuckDB, TIMESTAMP on BigQuery,
  TIMESTAMP_TZ on Snowflake). `utc_timestamp` turns one into a zone-less UTC timestamp so that
  dbt.date_trunc and casts to DATE give UTC days whatever the session time zone is.
-#}
{% macro utc_timestamp(expr) -%}
    {{ return(adapter.dispatch('utc_timestamp', 'polyai')(expr)) }}
{%- endmacro %}

{% macro default__utc_timestamp(expr) -%}
    {{ expr }}
{%- endmacro %}

{% macro duckdb__utc_timestamp(expr) -%}
    timezone('UTC', {{ expr }})
{%- endmacro %}

{% macro bigquery__utc_timestamp(expr) -%}
    {#- BigQuery TIMESTAMPs are instants and DATE()/TIMESTAMP_TRUNC default to UTC. -#}
    {{ expr }}
{%- endmacro %}

{% macro snowflake__utc_timestamp(expr) -%}
    convert_timezone('UTC', {{ expr }})::timestamp_ntz
{%- endmacro %}


{#- UTC calendar day of an instant, as a DATE. -#}
{% macro utc_date(expr) -%}
    cast({{ dbt.date_trunc('day', polyai.utc_timestamp(expr)) }} as date)
{%- endmacro %}


{#- SQL type of the connector's instants, for typed NULLs. -#}
{% macro type_instant() -%}
    {{ return(adapter.dispatch('type_instant', 'polyai')()) }}
{%- endmacro %}

{% macro default__type_instant() -%}
    {{ dbt.type_timestamp() }}
{%- endmacro %}

{% macro duckdb__type_instant() -%}
    timestamp with time zone
{%- endmacro %}

{% macro snowflake__type_instant() -%}
    timestamp_tz
{%- endmacro %}
