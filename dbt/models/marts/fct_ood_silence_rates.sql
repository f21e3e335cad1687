-- Out-of-domain and silence rates per UTC day (the conversation's start day), project, environment
-- and channel: ood turns / turns and silent turns / turns. Counts are kept next to the
-- rates so they can be re-aggregated (e.g. per day across channels).

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
        count(distinct turns.conversation_id) as conversations_with_turns,
        count(*) as turns,
        count(case when turns.is_ood then 1 end) as ood_turns,
        count(case when turns.is_silence then 1 end) as silence_turns
    from turns
    inner join conversations
        on turns.project_id = conversations.project_id
        and turns.conversation_id = conversations.conversation_id
    group by
        conversations.started_date,
        conversations.project_id,
        conversations.environment,
        conversations.channel

),

final as (

    select
        *,
        {{ polyai.safe_ratio('ood_turns', 'turns') }} as ood_rate,
        {{ polyai.safe_ratio('silence_turns', 'turns') }} as silence_rate
    from daily

)

select * from final
