-- Distribution of the duration of finished conversations per project, environment and channel, over
-- the whole loaded period: one row per duration bucket (empty buckets included, so every
-- project/environment/channel has the same rows), with the bucket's count and share, and the
-- duration percentiles of the project/environment/channel repeated on each of its rows.

with conversations as (

    select
        project_id,
        environment,
        channel,
        duration_seconds
    from {{ ref('stg_polyai__conversations') }}
    where is_finished
      and duration_seconds is not null

),

buckets as (

    -- [lower_bound_seconds, upper_bound_seconds); the last bucket is open-ended
    select 1 as bucket_order, '0-30s' as duration_bucket, 0 as lower_bound_seconds, 30 as upper_bound_seconds
    union all select 2, '30-60s', 30, 60
    union all select 3, '1-2min', 60, 120
    union all select 4, '2-5min', 120, 300
    union all select 5, '5-10min', 300, 600
    union all select 6, '10-30min', 600, 1800
    union all select 7, '30min+', 1800, cast(null as {{ dbt.type_int() }})

),

segments as (

    select
        project_id,
        environment,
        channel,
        count(*) as finished_conversations,
        {{ polyai.percentile('duration_seconds', 0.5) }} as duration_p50_seconds,
        {{ polyai.percentile('duration_seconds', 0.9) }} as duration_p90_seconds,
        {{ polyai.percentile('duration_seconds', 0.99) }} as duration_p99_seconds,
        avg(duration_seconds) as duration_mean_seconds,
        max(duration_seconds) as duration_max_seconds
    from conversations
    group by
        project_id,
        environment,
        channel

),

bucketed as (

    select
        conversations.project_id,
        conversations.environment,
        conversations.channel,
        buckets.bucket_order,
        count(*) as conversations
    from conversations
    inner join buckets
        on conversations.duration_seconds >= buckets.lower_bound_seconds
        and (
            buckets.upper_bound_seconds is null
            or conversations.duration_seconds < buckets.upper_bound_seconds
        )
    group by
        conversations.project_id,
        conversations.environment,
        conversations.channel,
        buckets.bucket_order

),

final as (

    select
        segments.project_id,
        segments.environment,
        segments.channel,
        buckets.bucket_order,
        buckets.duration_bucket,
        buckets.lower_bound_seconds,
        buckets.upper_bound_seconds,
        coalesce(bucketed.conversations, 0) as conversations,
        {{ polyai.safe_ratio('coalesce(bucketed.conversations, 0)', 'segments.finished_conversations') }}
            as share_of_conversations,
        segments.finished_conversations,
        segments.duration_p50_seconds,
        segments.duration_p90_seconds,
        segments.duration_p99_seconds,
        segments.duration_mean_seconds,
        segments.duration_max_seconds
    from segments
    cross join buckets
    left join bucketed
        on segments.project_id = bucketed.project_id
        and segments.environment = bucketed.environment
        and segments.channel = bucketed.channel
        and buckets.bucket_order = bucketed.bucket_order

)

select * from final
