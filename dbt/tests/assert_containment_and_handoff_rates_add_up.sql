-- Every finished conversation is either contained or handed off.
select *
from {{ ref('fct_containment') }}
where contained_conversations + handed_off_conversations != finished_conversations
   or finished_conversations + in_progress_conversations != conversations
   or (finished_conversations > 0 and abs(containment_rate + handoff_rate - 1) > 0.000001)
