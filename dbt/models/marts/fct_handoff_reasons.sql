-- Handed-off conversations per UTC day, project, environment, channel and handoff reason, with each
-- reason's share of that day's handoffs and of that day's finished conversations.
-- Handoffs without a reason are reported as 'unspecified'.

with finished as (

    select * from {{ ref('stg_polyai__conversations') }}
    where is_finished

),

by_outcome as (

    -- handoff_reason is NULL for the contained conversations, kept for the totals
    select
        started_date as conversation_date,
        project_id,
        environment,
        channel,
        case when is_handoff then coalesce(handoff_reason, 'unspecified') end as handoff_reason,
        count(*) as conversations
    from finished
    group by
        started_date,
        project_id,
        environment,
        channel,
        case when is_handoff then coalesce(handoff_reason, 'unspecified') end

),

with_day_totals as (

    select
        *,
        cast(sum(conversations) over (
            partition by project_id, conversation_date, environment, channel
        ) as {{ dbt.type_bigint() }}) as finished_conversations,
        cast(sum(case when handoff_reason is not null then conversations else 0 end) over (
            partition by project_id, conversation_date, environment, channel
        ) as {{ dbt.type_bigint() }}) as handed_off_conversations_all_reasons
    from by_outcome

),

final as (

    select
        conversation_date,
        project_id,
        environment,
        channel,
        handoff_reason,
        conversations as handed_off_conversations,
        handed_off_conversations_all_reasons,
        finished_conversations,
        {{ polyai.safe_ratio('conversations', 'handed_off_conversations_all_reasons') }} as share_of_handoffs,
        {{ polyai.safe_ratio('conversations', 'finished_conversations') }} as share_of_finished_conversations
    from with_day_totals
    where handoff_reason is not null

)

select * from final
