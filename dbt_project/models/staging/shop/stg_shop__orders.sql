with

source as (

    select * from {{ source('shop', 'orders') }}

),

-- The latest export carries the order's current status: an order exported as paid and later as
-- refunded is refunded.
latest as (

    select
        *,
        count(*) over (partition by platform, order_id) as n_exports
    from source
    qualify row_number() over (
        partition by platform, order_id
        order by {{ export_recency_order() }}
    ) = 1

),

amounts as (

    select
        *,
        cast(coalesce(paid_amount, 0) as decimal(18, 2)) as paid_amount_yuan,
        cast(coalesce(refunded_amount, 0) as decimal(18, 2)) as refunded_amount_yuan
    from latest

),

record_map as (

    select * from {{ ref('stg_identity__record_map') }}
    where source = 'orders'

)

select
    amounts.record_id,
    amounts.platform,
    amounts.order_id,
    record_map.user_id,
    amounts.appid,
    {{ clean_text('amounts.buyer_openid') }} as buyer_openid,
    {{ clean_text('amounts.buyer_unionid') }} as buyer_unionid,
    {{ clean_text('amounts.buyer_account') }} as buyer_account,
    -- The province only: the rest of the address is personal data and stays in raw.
    coalesce(
        {{ province_from_address('amounts.receiver_province') }},
        {{ province_from_address('amounts.receiver_address') }}
    ) as receiver_province,
    amounts.order_status,
    amounts.raw_status,
    amounts.paid_amount_yuan as paid_amount,
    amounts.refunded_amount_yuan as refunded_amount,
    -- Unpaid and cancelled orders can still carry the amount that was due; they are not GMV.
    -- A refund recorded above the paid amount (fees, data entry) must not make GMV negative.
    cast(
        case
            when amounts.order_status in {{ sql_list(var('non_revenue_order_statuses')) }} then 0
            else greatest(amounts.paid_amount_yuan - amounts.refunded_amount_yuan, 0)
        end
        as decimal(18, 2)
    ) as net_amount,
    amounts.paid_at is not null
        and amounts.order_status not in {{ sql_list(var('non_revenue_order_statuses')) }}
        as is_paid_order,
    amounts.created_at,
    amounts.paid_at,
    amounts.n_exports,
    amounts._loaded_at as last_loaded_at

from amounts
left join record_map
    on amounts.record_id = record_map.record_id
