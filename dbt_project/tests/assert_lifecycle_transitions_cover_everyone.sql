-- Every month's transitions add up to the people with a snapshot that month, and the last month's stages
-- match dim_users.lifecycle_stage counts (people seen by as_of_date).

{{ config(meta={'dagster': {'ref': {'name': 'fct_lifecycle_transitions'}}}) }}
with

transitions as (

    select month_start, to_stage, sum(users) as users
    from {{ ref('fct_lifecycle_transitions') }}
    group by month_start, to_stage

),

snapshots as (

    select month_start, lifecycle_stage as to_stage, count(*) as users
    from {{ ref('fct_user_monthly_status') }}
    group by month_start, lifecycle_stage

),

current_stages as (

    select
        (select max(month_start) from snapshots) as month_start,
        lifecycle_stage as to_stage,
        count(*) as users
    from {{ ref('dim_users') }}
    where lifecycle_stage is not null
    group by lifecycle_stage

),

mismatches as (

    select 'transitions vs snapshots' as check_name, *
    from (
        (select * from transitions except select * from snapshots)
        union all
        (select * from snapshots except select * from transitions)
    )
    union all
    select 'dim_users vs last snapshot', *
    from (
        (select * from current_stages except select * from snapshots)
        union all
        (select * from snapshots where month_start = (select max(month_start) from snapshots)
         except select * from current_stages)
    )

)

select * from mismatches
