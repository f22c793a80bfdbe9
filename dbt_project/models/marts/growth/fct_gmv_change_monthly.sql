-- Month-over-month change of each channel's net GMV, split into the part each funnel factor explains by a
-- sequential (chain-substitution) decomposition in the fixed order traffic, referral, conversion, frequency,
-- average order value (docs/models.md, "Month-over-month attribution"). The effects add up to the change.
with

funnel as (

    select
        *,
        lag(month_start) over by_channel as previous_month_start,
        lag(net_gmv) over by_channel as previous_net_gmv,
        lag(organic_users) over by_channel as previous_organic_users,
        lag(referral_multiplier) over by_channel as previous_referral_multiplier,
        lag(conversion_rate) over by_channel as previous_conversion_rate,
        lag(order_frequency) over by_channel as previous_order_frequency,
        lag(average_order_value) over by_channel as previous_average_order_value
    from {{ ref('fct_gmv_funnel_monthly') }}
    window by_channel as (partition by channel_code order by month_start)

),

factors as (

    select
        channel_code,
        month_start,
        previous_month_start,
        channel_name,
        channel_group,
        net_gmv,
        previous_net_gmv,
        -- Traffic and the referral multiplier must exist in both months (there is a pool of people who
        -- joined on their own); otherwise the change is left undecomposed.
        previous_organic_users > 0 and organic_users > 0 as is_decomposed,
        cast(previous_organic_users as double) as t0,
        cast(organic_users as double) as t1,
        previous_referral_multiplier as r0,
        referral_multiplier as r1,
        previous_conversion_rate as c0,
        conversion_rate as c1,
        -- A month without buyers has conversion 0 and no frequency or order value; it takes the other
        -- month's (or 0 if neither had buyers): they multiply a zero conversion rate, so the products, and
        -- with them the decomposition, stay exact.
        coalesce(previous_order_frequency, order_frequency, 0) as f0,
        coalesce(order_frequency, previous_order_frequency, 0) as f1,
        coalesce(previous_average_order_value, average_order_value, 0) as a0,
        coalesce(average_order_value, previous_average_order_value, 0) as a1
    from funnel
    where previous_month_start is not null

)

select
    channel_code,
    month_start,
    previous_month_start,
    channel_name,
    channel_group,
    net_gmv,
    previous_net_gmv,
    cast(net_gmv - previous_net_gmv as decimal(18, 2)) as net_gmv_change,
    is_decomposed,
    case when is_decomposed then (t1 - t0) * r0 * c0 * f0 * a0 end as traffic_effect,
    case when is_decomposed then t1 * (r1 - r0) * c0 * f0 * a0 end as referral_effect,
    case when is_decomposed then t1 * r1 * (c1 - c0) * f0 * a0 end as conversion_effect,
    case when is_decomposed then t1 * r1 * c1 * (f1 - f0) * a0 end as frequency_effect,
    case when is_decomposed then t1 * r1 * c1 * f1 * (a1 - a0) end as aov_effect,
    case when is_decomposed then 0.0 else cast(net_gmv - previous_net_gmv as double) end as undecomposed_change
from factors
