-- One row per metric value of a conversation. conversations.metrics is a JSON object
-- (metric name -> value); a value is a string, or a list of strings when the metric was
-- written more than once. Both shapes give one row per value; value_position orders the
-- writes and is_latest_value marks the last one.

with conversations as (

    select
        project_id,
        conversation_id,
        metrics
    from {{ ref('stg_polyai__conversations') }}

),

metric_values as (

    select
        conversations.project_id,
        conversations.conversation_id,
        metric_entry.key as metric_name,
        value_element.index as value_position,
        {{ polyai.json_to_string('value_element.value') }} as metric_value
    from conversations
    {{ polyai.json_object_entries('conversations.metrics', 'metric_entry') }}
    {{ polyai.json_array_elements(polyai.json_as_array('metric_entry.value'), 'value_element') }}

),

final as (

    select
        project_id,
        conversation_id,
        metric_name,
        value_position,
        metric_value,
        value_position = max(value_position) over (
            partition by project_id, conversation_id, metric_name
        ) as is_latest_value
    from metric_values

)

select * from final
