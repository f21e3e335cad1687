-- Containment per UTC day, project, environment and channel: of the finished conversations, the share
-- the agent handled end to end (contained) versus the share handed off. Conversations still
-- in progress are counted but left out of both rates, since their outcome is not known yet.

with conversations as (

    select * from {{ ref('stg_polyai__conversations') }}

),

daily as (

    select
        started_date as conversation_date,
        project_id,
        environment,
        channel,
        count(*) as conversations,
        count(case when is_in_progress then 1 end) as in_progress_conversations,
        count(case when is_finished then 1 end) as finished_conversations,
        count(case when is_finished and not is_handoff then 1 end) as contained_conversations,
        count(case when is_finished and is_handoff then 1 end) as handed_off_conversations
    from conversations
    group by
        started_date,
        project_id,
        environment,
        channel

),

final as (

    select
        *,
        {{ polyai.safe_ratio('contained_conversations', 'finished_conversations') }} as containment_rate,
        {{ polyai.safe_ratio('handed_off_conversations', 'finished_conversations') }} as handoff_rate
    from daily

)

select * from final
