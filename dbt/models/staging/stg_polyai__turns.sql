-- One row per turn of a conversation transcript, renamed and typed.
{%- set source_relation = source('polyai', 'turns') %}
{%- set cols = polyai.existing_columns(source_relation) %}
{%- set text = dbt.type_string() %}
{%- set boolean = dbt.type_boolean() %}
{%- set instant = polyai.type_instant() %}
{#- Turns loaded before the connector kept projects apart have none until its next run fills it. #}
{%- set project_id = polyai.optional_column(cols, 'project_id', text) %}

with source as (

    select * from {{ source_relation }}

),

renamed as (

    select
        {{ dbt.concat(["coalesce(" ~ project_id ~ ", '')", "'-'", 'conversation_id', "'-'", dbt.cast('turn_index', text)]) }} as turn_id,
        {{ polyai.optional_column(cols, 'account_id', text) }} as account_id,
        {{ project_id }} as project_id,
        conversation_id,
        turn_index,
        {{ polyai.utc_timestamp('conversation_started_at') }} as conversation_started_at,
        {{ polyai.utc_date('conversation_started_at') }} as conversation_started_date,

        {{ polyai.optional_column(cols, 'user_input', text) }} as user_input,
        {{ polyai.optional_column(cols, 'user_input_dtmf', text) }} as user_input_dtmf,
        {{ polyai.optional_column(cols, 'translated_user_input', text) }} as translated_user_input,
        {{ polyai.utc_timestamp(polyai.optional_column(cols, 'user_input_datetime', instant)) }} as user_input_at,
        {{ polyai.optional_column(cols, 'agent_response', text) }} as agent_response,
        {{ polyai.optional_column(cols, 'english_agent_response', text) }} as english_agent_response,
        {{ polyai.utc_timestamp(polyai.optional_column(cols, 'agent_response_datetime', instant)) }} as agent_response_at,

        coalesce({{ polyai.optional_column(cols, 'barge_in', boolean) }}, false) as is_barge_in,
        coalesce({{ polyai.optional_column(cols, 'is_ood', boolean) }}, false) as is_ood,
        coalesce({{ polyai.optional_column(cols, 'is_silence', boolean) }}, false) as is_silence,

        {{ polyai.optional_column(cols, 'intents', polyai.type_json()) }} as intents,
        {{ polyai.optional_column(cols, 'entities', polyai.type_json()) }} as entities,

        {{ polyai.optional_column(cols, 'latency', polyai.type_double()) }} as latency_seconds,
        {{ polyai.optional_column(cols, 'latency_detail', polyai.type_json()) }} as latency_detail

    from source

)

select * from renamed
