with

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

attribution as (

    select * from {{ ref('int_user_attribution') }}

)

select
    orders.record_id as order_key,
    orders.platform,
    orders.order_id,
    orders.user_id,
    orders.order_status,
    orders.is_paid_order,
    -- Numbers a person's paid orders 1, 2, 3, ... so first-order conversion and repurchase are
    -- a filter, not a window function, in every downstream query.
    case
        when orders.is_paid_order then row_number() over (
            partition by orders.user_id, orders.is_paid_order
            order by orders.paid_at, orders.record_id
        )
    end as paid_order_seq,
    orders.paid_amount,
    orders.refunded_amount,
    orders.net_amount,
    orders.created_at,
    orders.paid_at,
    -- Only provinces the seed knows: a garbled address must not invent a province.
    provinces.province as receiver_province,
    cast(date_trunc('month', orders.created_at) as date) as order_month,
    -- The buyer's credited acquisition channel and cohort (int_user_attribution), so GMV by channel is a
    -- group by on this table.
    attribution.channel_code,
    attribution.channel_name,
    attribution.channel_group,
    attribution.acquisition_type,
    attribution.cohort_month

from orders
left join attribution
    on orders.user_id = attribution.user_id
left join {{ ref('provinces') }} as provinces
    on orders.receiver_province = provinces.province
