-- Cumulative net GMV per person N days after they were first seen (N in var ltv_day_marks), per monthly
-- cohort and credited channel. Only people whose N days have passed by as_of_date count at point N.
with

as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

users as (

    select user_id, first_seen_at, cohort_month, channel_code, channel_name, channel_group
    from {{ ref('int_user_attribution') }}
    where cohort_month is not null

),

marks as (

    select unnest({{ var('ltv_day_marks') }}) as days_since_first_seen

),

user_marks as (

    select
        users.*,
        marks.days_since_first_seen,
        -- the window [first_seen_at, first_seen_at + N days) has ended by the end of as_of_date
        users.first_seen_at + to_days(marks.days_since_first_seen)
            <= cast(as_of.as_of_date + interval 1 day as timestamp) as is_matured
    from users
    cross join marks
    cross join as_of

),

user_values as (

    select
        user_marks.user_id,
        user_marks.days_since_first_seen,
        any_value(user_marks.cohort_month) as cohort_month,
        any_value(user_marks.channel_code) as channel_code,
        any_value(user_marks.channel_name) as channel_name,
        any_value(user_marks.channel_group) as channel_group,
        any_value(user_marks.is_matured) as is_matured,
        coalesce(sum(orders.net_amount), 0) as net_gmv
    from user_marks
    left join {{ ref('fct_orders') }} as orders
        on user_marks.user_id = orders.user_id
        and orders.is_paid_order
        and orders.paid_at < user_marks.first_seen_at + to_days(user_marks.days_since_first_seen)
    group by user_marks.user_id, user_marks.days_since_first_seen

)

select
    cohort_month,
    channel_code,
    days_since_first_seen,
    any_value(channel_name) as channel_name,
    any_value(channel_group) as channel_group,
    count(*) as users,
    count(*) filter (where is_matured) as matured_users,
    cast(coalesce(sum(net_gmv) filter (where is_matured), 0) as decimal(18, 2)) as cumulative_net_gmv,
    {{ safe_divide('sum(net_gmv) filter (where is_matured)', 'count(*) filter (where is_matured)') }}
        as ltv_per_user,
    count(*) filter (where is_matured) = count(*) as is_complete
from user_values
group by cohort_month, channel_code, days_since_first_seen
