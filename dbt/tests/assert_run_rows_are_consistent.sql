-- Each row of the run history keeps its own parts in proportion: the new, re-pulled and
-- finished conversations are among those loaded, and a failed part, and only a failed part,
-- carries the error's message.
select run_id, part, state_key
from {{ ref('stg_polyai__runs') }}
where conversations_new > conversations
   or repulled > conversations
   or finished_since_last > conversations
   or is_failed != (error_message is not null)
