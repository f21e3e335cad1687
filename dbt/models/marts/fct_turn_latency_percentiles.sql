-- Agent response latency per UTC day (the conversation's start day), project, environment and channel:
-- p50 / p90 / p99 / mean / max of turns.latency in seconds. Turns without a numeric latency
-- (not requested, or sent as a per-stage object in latency_detail) are counted but not used.

with turns as (

    select * from {{ ref('stg_polyai__turns') }}

),

conversations as (

    select * from {{ ref('stg_polyai__conversations') }}

),

daily as (

    select
        conversations.started_date as conversation_date,
        conversations.project_id,
        conversations.environment,
        conversations.channel,
        count(*) as turns,
        count(turns.latency_seconds) as turns_with_latency,
        {{ polyai.percentile('turns.latency_seconds', 0.5) }} as latency_p50_seconds,
        {{ polyai.percentile('turns.latency_seconds', 0.9) }} as latency_p90_seconds,
        {{ polyai.percentile('turns.latency_seconds', 0.99) }} as latency_p99_seconds,
        avg(turns.latency_seconds) as latency_mean_seconds,
        max(turns.latency_seconds) as latency_max_seconds
    from turns
    inner join conversations
        on turns.project_id = conversations.project_id
        and turns.conversation_id = conversations.conversation_id
    group by
        conversations.started_date,
        conversations.project_id,
        conversations.environment,
        conversations.channel

)

select * from daily
