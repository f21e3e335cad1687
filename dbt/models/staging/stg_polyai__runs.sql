-- The connector's run history: one row per load part and project, of complete loads only.
-- A row is loaded in the same dlt load as the data it describes; a load counts once dlt has
-- recorded it in _dlt_loads with status 0 (as dlt reads its own state), so the row of a load
-- that was killed before it completed is left out.
{%- set instant = polyai.type_instant() %}

with runs as (

    select * from {{ source('polyai', '_polyai_runs') }}

),

loads as (

    select load_id, inserted_at from {{ source('polyai', '_dlt_loads') }} where status = 0

),

committed as (

    select
        runs.run_id,
        runs.part,
        runs.state_key,
        runs.label,
        runs.project_id,
        runs.account_id,
        runs.region,
        runs.client_env,
        -- 'run' for the schedule's runs, 'resync' for a range read again (its cursor stays).
        runs.kind,
        runs.outcome,
        runs.outcome = 'failed' as is_failed,

        {{ polyai.utc_timestamp('runs.ran_at') }} as ran_at,
        {{ polyai.utc_date('runs.ran_at') }} as run_date,
        {{ polyai.utc_timestamp('runs.window_from') }} as window_from,
        {{ polyai.utc_timestamp('runs.window_to') }} as window_to,
        {{ polyai.utc_timestamp('runs.cursor_before') }} as cursor_before,
        {{ polyai.utc_timestamp('runs.cursor_after') }} as cursor_after,
        -- How far behind its run time the project's cursor stands after the part.
        {{ dbt.datediff(polyai.utc_timestamp('runs.cursor_after'), polyai.utc_timestamp('runs.ran_at'), 'second') }}
            as lag_seconds,

        runs.conversations,
        runs.conversations_new,
        runs.turns,
        runs.repulled,
        runs.finished_since_last,
        runs.pending_after,
        runs.expired,
        runs.hidden_transcripts,
        runs.requests,
        runs.retries,
        runs.rate_limited,

        runs.status,
        runs.error_code,
        runs.correlation_id,
        runs.error_message,
        runs.connector_version,

        {{ polyai.utc_timestamp('runs.extract_started_at') }} as extract_started_at,
        runs.extract_seconds,
        -- The whole part, extract to the load's completion (both by the loading machine's clock):
        -- its normalize and load steps run after its row is written.
        {{ dbt.datediff(polyai.utc_timestamp('runs.extract_started_at'), polyai.utc_timestamp('loads.inserted_at'), 'second') }}
            as part_seconds,
        runs._dlt_load_id as load_id

    from runs
    inner join loads on loads.load_id = runs._dlt_load_id

)

select * from committed
