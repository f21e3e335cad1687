-- One row per intent detected in a turn: the turns.intents JSON list unnested.
-- A turn with an empty (or NULL) list has no row.

with turns as (

    select
        project_id,
        conversation_id,
        turn_index,
        intents
    from {{ ref('stg_polyai__turns') }}

),

intents as (

    select
        turns.project_id,
        turns.conversation_id,
        turns.turn_index,
        intent_element.index as intent_position,
        {{ polyai.json_to_string('intent_element.value') }} as intent
    from turns
    {{ polyai.json_array_elements('turns.intents', 'intent_element') }}

)

select * from intents
