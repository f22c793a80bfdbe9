-- The GMV funnel of each monthly cohort in each credited channel: everything its people have bought so far.
with

users as (

    select user_id, cohort_month, channel_code, channel_name, channel_group, acquisition_type
    from {{ ref('int_user_attribution') }}
    where cohort_month is not null

),

orders as (

    select
        user_id,
        count(*) filter (where is_paid_order) as paid_orders,
        sum(net_amount) as net_gmv
    from {{ ref('fct_orders') }}
    group by user_id

),

counts as (

    select
        users.channel_code,
        users.cohort_month,
        any_value(users.channel_name) as channel_name,
        any_value(users.channel_group) as channel_group,
        count(*) filter (where users.acquisition_type <> 'referred') as organic_users,
        count(*) filter (where users.acquisition_type = 'referred') as referred_users,
        count(*) as users,
        count(*) filter (where orders.paid_orders > 0) as buyers,
        cast(coalesce(sum(orders.paid_orders), 0) as bigint) as paid_orders,
        cast(coalesce(sum(orders.net_gmv), 0) as decimal(18, 2)) as net_gmv
    from users
    left join orders
        on users.user_id = orders.user_id
    group by users.channel_code, users.cohort_month

)

select
    channel_code,
    cohort_month,
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
