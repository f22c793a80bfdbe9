with

orders as (

    select * from {{ ref('stg_shop__orders') }}

)

select
    record_id as order_key,
    platform,
    order_id,
    user_id,
    order_status,
    is_paid_order,
    -- Numbers a person's paid orders 1, 2, 3, ... so first-order conversion and repurchase are
    -- a filter, not a window function, in every downstream query.
    case
        when is_paid_order then row_number() over (
            partition by user_id, is_paid_order
            order by paid_at, order_key
        )
    end as paid_order_seq,
    paid_amount,
    refunded_amount,
    net_amount,
    created_at,
    paid_at,
    cast(date_trunc('month', created_at) as date) as order_month

from orders
