with

users as (

    select
        user_id,
        count(*) as n_records,
        count(distinct source) as n_sources
    from {{ ref('stg_identity__record_map') }}
    group by user_id

),

first_seen as (

    select
        user_id,
        min(touched_at) as first_seen_at
    from {{ ref('int_user_touchpoints') }}
    group by user_id

),

identifiers as (

    -- id_map holds one row per identity, so a count per type is a count of distinct identifiers.
    select
        user_id,
        count(*) filter (where id_type = 'openid') as n_openids,
        count(*) filter (where id_type = 'unionid') as n_unionids,
        count(*) filter (where id_type = 'phone') as n_phones,
        count(*) filter (where id_type = 'external_userid') as n_external_userids,
        count(*) filter (where id_type = 'member_id') as n_member_ids
    from {{ ref('stg_identity__id_map') }}
    group by user_id

),

orders as (

    -- Built on fct_orders so the person-level GMV cannot disagree with the order-level GMV.
    select
        user_id,
        min(paid_at) filter (where is_paid_order) as first_order_at,
        max(paid_at) filter (where is_paid_order) as last_order_at,
        count(*) filter (where is_paid_order) as lifetime_orders,
        sum(net_amount) as lifetime_net_gmv
    from {{ ref('fct_orders') }}
    group by user_id

)

select
    users.user_id,
    first_seen.first_seen_at,
    users.n_records,
    users.n_sources,
    coalesce(identifiers.n_openids, 0) as n_openids,
    coalesce(identifiers.n_unionids, 0) as n_unionids,
    coalesce(identifiers.n_phones, 0) as n_phones,
    coalesce(identifiers.n_external_userids, 0) as n_external_userids,
    coalesce(identifiers.n_member_ids, 0) as n_member_ids,
    coalesce(first_touch.first_touch_channel_code, '(none)') as first_touch_channel_code,
    coalesce(first_touch.first_touch_channel_name, '(none)') as first_touch_channel_name,
    coalesce(first_touch.first_touch_channel_group, 'none') as first_touch_channel_group,
    orders.first_order_at,
    orders.last_order_at,
    coalesce(orders.lifetime_orders, 0) as lifetime_orders,
    cast(coalesce(orders.lifetime_net_gmv, 0) as decimal(18, 2)) as lifetime_net_gmv

from users
left join first_seen
    on users.user_id = first_seen.user_id
left join identifiers
    on users.user_id = identifiers.user_id
left join {{ ref('int_user_first_touch') }} as first_touch
    on users.user_id = first_touch.user_id
left join orders
    on users.user_id = orders.user_id
