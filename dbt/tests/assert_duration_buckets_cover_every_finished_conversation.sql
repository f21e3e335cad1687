-- The buckets of each project/environment/channel add up to its finished conversations: no duration
-- falls outside or into two buckets.
select
    project_id,
    environment,
    channel,
    sum(conversations) as bucketed_conversations,
    max(finished_conversations) as finished_conversations
from {{ ref('fct_duration_distribution') }}
group by project_id, environment, channel
having sum(conversations) != max(finished_conversations)
