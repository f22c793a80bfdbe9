-- The GMV funnel of each calendar month in each credited channel: the channel's pool of people first seen by
-- the end of the month, who of them bought in the month, and the month's net GMV.
with

users as (

    select user_id, cohort_month, channel_code, channel_name, channel_group, acquisition_type
    from {{ ref('int_user_attribution') }}
    where cohort_month is not null

),

orders as (

    select * from {{ ref('fct_orders') }}

),

channels as (

    select
        channel_code,
        any_value(channel_name) as channel_name,
        any_value(channel_group) as channel_group,
        min(cohort_month) as first_month
    from users
    group by channel_code

),

months as (

    -- Through the later of as_of_date's month and the last order month, so every order lands in a row.
    select cast(unnest(generate_series(
        (select cast(min(cohort_month) as timestamp) from users),
        greatest(
            (select cast(date_trunc('month', as_of_date) as timestamp) from {{ ref('int_as_of_date') }}),
            (select cast(max(order_month) as timestamp) from orders)
        ),
        interval 1 month
    )) as date) as month_start

),

spine as (

    select channels.*, months.month_start
    from channels
    inner join months
        on months.month_start >= channels.first_month

),

cohorts as (

    select
        channel_code,
        cohort_month,
        count(*) filter (where acquisition_type <> 'referred') as organic_users,
        count(*) as users
    from users
    group by channel_code, cohort_month

),

pool as (

    select
        spine.channel_code,
        spine.month_start,
        cast(coalesce(sum(cohorts.organic_users), 0) as bigint) as organic_users,
        cast(coalesce(sum(cohorts.users), 0) as bigint) as users
    from spine
    left join cohorts
        on spine.channel_code = cohorts.channel_code
        and cohorts.cohort_month <= spine.month_start
    group by spine.channel_code, spine.month_start

),

sales as (

    select
        channel_code,
        order_month as month_start,
        count(distinct user_id) filter (where is_paid_order) as buyers,
        count(*) filter (where is_paid_order) as paid_orders,
        sum(net_amount) as net_gmv
    from orders
    group by channel_code, order_month

),

counts as (

    select
        spine.channel_code,
        spine.month_start,
        spine.channel_name,
        spine.channel_group,
        pool.organic_users,
        pool.users - pool.organic_users as referred_users,
        pool.users,
        coalesce(sales.buyers, 0) as buyers,
        coalesce(sales.paid_orders, 0) as paid_orders,
        cast(coalesce(sales.net_gmv, 0) as decimal(18, 2)) as net_gmv
    from spine
    inner join pool
        on spine.channel_code = pool.channel_code
        and spine.month_start = pool.month_start
    left join sales
        on spine.channel_code = sales.channel_code
        and spine.month_start = sales.month_start

)

select
    channel_code,
    month_start,
    channel_name,
    channel_group,
    organic_users,
    referred_users,
    users,
    buyers,
    paid_orders,
    net_gmv,
    {{ gmv_funnel_factors() }}
from counts
