-- The connector's health per UTC day and project: runs, failures, what was loaded, how far
-- behind the cursor stood. From the run history of complete loads (stg_polyai__runs). Runs and
-- lag are the schedule's; a resync reads an old range again and is counted on its own.

with runs as (

    select * from {{ ref('stg_polyai__runs') }}

),

daily as (

    select
        run_date,
        project_id,
        region,
        client_env,
        count(distinct case when kind = 'run' then run_id end) as runs,
        count(*) as load_parts,
        count(distinct case when is_failed and kind = 'run' then run_id end) as failed_runs,
        count(distinct case when kind = 'resync' then run_id end) as resyncs,
        count(case when is_failed then 1 end) as failed_parts,
        cast(sum(conversations) as {{ dbt.type_bigint() }}) as conversations_loaded,
        cast(sum(conversations_new) as {{ dbt.type_bigint() }}) as conversations_new,
        cast(sum(turns) as {{ dbt.type_bigint() }}) as turns_loaded,
        cast(sum(requests) as {{ dbt.type_bigint() }}) as requests,
        cast(sum(retries) as {{ dbt.type_bigint() }}) as retries,
        cast(sum(rate_limited) as {{ dbt.type_bigint() }}) as rate_limited,
        max(case when kind = 'run' then lag_seconds end) as max_lag_seconds,
        max(case when kind = 'run' then ran_at end) as last_ran_at,
        max(case when kind = 'run' and not is_failed then ran_at end) as last_loaded_at
    from runs
    group by
        run_date,
        project_id,
        region,
        client_env

)

select * from daily
