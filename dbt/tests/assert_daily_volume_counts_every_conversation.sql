-- fct_daily_volume must account for every conversation exactly once, and split each day's
-- conversations into finished + in progress.
with source_total as (
    select count(*) as conversations from {{ source('polyai', 'conversations') }}
),

mart_total as (
    select
        sum(conversations) as conversations,
        sum(case when conversations != finished_conversations + in_progress_conversations then 1 else 0 end)
            as inconsistent_rows
    from {{ ref('fct_daily_volume') }}
)

select
    source_total.conversations as source_conversations,
    mart_total.conversations as mart_conversations,
    mart_total.inconsistent_rows
from source_total
cross join mart_total
where coalesce(mart_total.conversations, 0) != source_total.conversations
   or mart_total.inconsistent_rows > 0
