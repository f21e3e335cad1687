-- One row per entity value found in a turn. turns.entities is a JSON list of objects
-- (entity name -> value) and a value is a string or a list of strings: each list element
-- becomes its own row, a single string is value_position 0.

with turns as (

    select
        project_id,
        conversation_id,
        turn_index,
        entities
    from {{ ref('stg_polyai__turns') }}

),

entity_values as (

    select
        turns.project_id,
        turns.conversation_id,
        turns.turn_index,
        entity_object.index as entity_position,
        entity_entry.key as entity_name,
        value_element.index as value_position,
        {{ polyai.json_to_string('value_element.value') }} as entity_value
    from turns
    {{ polyai.json_array_elements('turns.entities', 'entity_object') }}
    {{ polyai.json_object_entries('entity_object.value', 'entity_entry') }}
    {{ polyai.json_array_elements(polyai.json_as_array('entity_entry.value'), 'value_element') }}

)

select * from entity_values
