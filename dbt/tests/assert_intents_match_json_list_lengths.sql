-- Every turn has exactly as many rows in int_polyai__turn_intents as its intents list has elements.
with expected as (
    select
        project_id,
        conversation_id,
        turn_index,
        coalesce({{ polyai.json_array_length('intents') }}, 0) as intent_count
    from {{ ref('stg_polyai__turns') }}
),

actual as (
    select
        project_id,
        conversation_id,
        turn_index,
        count(*) as intent_count
    from {{ ref('int_polyai__turn_intents') }}
    group by project_id, conversation_id, turn_index
)

select
    expected.project_id,
    expected.conversation_id,
    expected.turn_index,
    expected.intent_count as expected_intents,
    coalesce(actual.intent_count, 0) as actual_intents
from expected
left join actual
    on expected.project_id = actual.project_id
    and expected.conversation_id = actual.conversation_id
    and expected.turn_index = actual.turn_index
where expected.intent_count != coalesce(actual.intent_count, 0)
