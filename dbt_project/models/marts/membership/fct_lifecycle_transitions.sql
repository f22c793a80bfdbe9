-- One row per month and (stage at the previous month end, stage at this month end): how many people moved
-- between lifecycle stages. People first seen in the month come from `(not yet seen)`.
with

snapshots as (

    select
        user_id,
        month_start,
        lifecycle_stage,
        lag(lifecycle_stage) over (partition by user_id order by month_start) as previous_stage
    from {{ ref('int_user_month_snapshots') }}

)

select
    month_start,
    coalesce(previous_stage, '(not yet seen)') as from_stage,
    lifecycle_stage as to_stage,
    count(*) as users
from snapshots
group by all
