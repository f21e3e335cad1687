-- fct_load_health must account for every part of a complete load once, and its failures
-- must be a subset of its runs.
with staged as (
    select count(*) as parts, count(case when is_failed then 1 end) as failed
    from {{ ref('stg_polyai__runs') }}
),

mart as (
    select
        sum(load_parts) as parts,
        sum(failed_parts) as failed,
        sum(case when failed_runs > runs or failed_parts > load_parts then 1 else 0 end) as inconsistent_rows
    from {{ ref('fct_load_health') }}
)

select staged.parts, mart.parts as mart_parts, mart.inconsistent_rows
from staged
cross join mart
where coalesce(mart.parts, 0) != staged.parts
   or coalesce(mart.failed, 0) != staged.failed
   or mart.inconsistent_rows > 0
