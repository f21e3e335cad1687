-- Conversations per UTC day, project, environment, channel and agent variant.

with conversations as (

    select * from {{ ref('stg_polyai__conversations') }}

),

daily as (

    select
        started_date as conversation_date,
        project_id,
        environment,
        channel,
        variant_id,
        variant_name,
        count(*) as conversations,
        count(case when is_finished then 1 end) as finished_conversations,
        count(case when is_in_progress then 1 end) as in_progress_conversations,
        cast(sum(turn_count) as {{ dbt.type_bigint() }}) as turns,
        cast(sum(duration_seconds) as {{ dbt.type_bigint() }}) as duration_seconds
    from conversations
    group by
        started_date,
        project_id,
        environment,
        channel,
        variant_id,
        variant_name

)

select * from daily
