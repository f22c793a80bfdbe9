-- Each person's standing at the end of every month since they were first seen, up to the month of
-- as_of_date (whose snapshot is taken on as_of_date itself): trailing-365-day net spend and the member tier it
-- earns, paid orders so far, and the lifecycle stage on that day.
with

as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

users as (

    select user_id, first_seen_at, cohort_month
    from {{ ref('int_user_attribution') }}
    where first_seen_at is not null

),

months as (

    select cast(unnest(generate_series(
        (select cast(min(cohort_month) as timestamp) from users),
        (select cast(date_trunc('month', as_of_date) as timestamp) from as_of),
        interval 1 month
    )) as date) as month_start

),

snapshots as (

    select
        users.user_id,
        months.month_start,
        least(cast(last_day(months.month_start) as date), as_of.as_of_date) as snapshot_date
    from users
    inner join months
        on months.month_start >= users.cohort_month
    cross join as_of
    -- someone first seen after as_of_date (only when the var is set) is not a person yet on that day
    where cast(users.first_seen_at as date) <= as_of.as_of_date

),

paid_orders as (

    select user_id, paid_at, net_amount
    from {{ ref('stg_shop__orders') }}
    where is_paid_order

),

standing as (

    select
        snapshots.user_id,
        snapshots.month_start,
        snapshots.snapshot_date,
        min(paid_orders.paid_at) as first_order_at,
        max(paid_orders.paid_at) as last_order_at,
        count(paid_orders.paid_at) as paid_orders_to_date,
        cast(coalesce(sum(paid_orders.net_amount), 0) as decimal(18, 2)) as net_gmv_to_date,
        -- the 365 days ending on snapshot_date, both ends included
        cast(coalesce(sum(paid_orders.net_amount) filter (
            where paid_orders.paid_at >= cast(snapshots.snapshot_date - interval 364 day as timestamp)
        ), 0) as decimal(18, 2)) as trailing_365d_net_spend
    from snapshots
    left join paid_orders
        on snapshots.user_id = paid_orders.user_id
        and paid_orders.paid_at < cast(snapshots.snapshot_date + interval 1 day as timestamp)
    group by all

),

tiers as (

    select
        tier_code,
        tier_rank,
        min_trailing_365d_net_spend as lower_bound,
        lead(min_trailing_365d_net_spend) over (order by min_trailing_365d_net_spend) as upper_bound
    from {{ ref('member_tiers') }}

)

select
    standing.user_id,
    standing.month_start,
    standing.snapshot_date,
    standing.trailing_365d_net_spend,
    tiers.tier_code,
    tiers.tier_rank,
    standing.paid_orders_to_date,
    standing.net_gmv_to_date,
    standing.first_order_at,
    standing.last_order_at,
    {{ lifecycle_stage('standing.first_order_at', 'standing.last_order_at', 'standing.snapshot_date') }}
        as lifecycle_stage
from standing
left join tiers
    on standing.trailing_365d_net_spend >= tiers.lower_bound
    and (tiers.upper_bound is null or standing.trailing_365d_net_spend < tiers.upper_bound)
