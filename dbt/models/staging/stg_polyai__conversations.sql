-- One row per conversation, renamed and typed; nothing is filtered out.
{%- set source_relation = source('polyai', 'conversations') %}
{%- set cols = polyai.existing_columns(source_relation) %}
{%- set text = dbt.type_string() %}
{%- set bigint = dbt.type_bigint() %}
{%- set boolean = dbt.type_boolean() %}

with source as (

    select * from {{ source_relation }}

),

renamed as (

    select
        id as conversation_id,
        {{ polyai.optional_column(cols, 'account_id', text) }} as account_id,
        {{ polyai.optional_column(cols, 'project_id', text) }} as project_id,
        {{ polyai.optional_column(cols, 'variant_id', text) }} as variant_id,
        {{ polyai.optional_column(cols, 'variant_name', text) }} as variant_name,
        -- never NULL, so marts can group and join on them
        coalesce({{ polyai.optional_column(cols, 'environment', text) }}, 'unknown') as environment,
        coalesce({{ polyai.optional_column(cols, 'channel', text) }}, 'unknown') as channel,

        {{ polyai.utc_timestamp('started_at') }} as started_at,
        {{ polyai.utc_date('started_at') }} as started_date,

        nullif({{ polyai.optional_column(cols, 'from_number', text) }}, '') as from_number,
        nullif({{ polyai.optional_column(cols, 'to_number', text) }}, '') as to_number,

        coalesce({{ polyai.optional_column(cols, 'in_progress', boolean) }}, false) as is_in_progress,
        not coalesce({{ polyai.optional_column(cols, 'in_progress', boolean) }}, false) as is_finished,
        coalesce({{ polyai.optional_column(cols, 'handoff', boolean) }}, false) as is_handoff,
        nullif({{ polyai.optional_column(cols, 'handoff_reason', text) }}, '') as handoff_reason,
        nullif({{ polyai.optional_column(cols, 'handoff_destination', text) }}, '') as handoff_destination,

        {{ polyai.optional_column(cols, 'num_turns', bigint) }} as turn_count,
        {{ polyai.optional_column(cols, 'num_silences', bigint) }} as silence_count,
        {{ polyai.optional_column(cols, 'num_ood', bigint) }} as ood_count,
        {{ polyai.optional_column(cols, 'total_duration', bigint) }} as duration_seconds,
        {{ polyai.optional_column(cols, 'polyai_duration', bigint) }} as polyai_duration_seconds,

        {{ polyai.optional_column(cols, 'metrics', polyai.type_json()) }} as metrics,
        {{ polyai.optional_column(cols, 'state', polyai.type_json()) }} as state

    from source

)

select * from renamed
