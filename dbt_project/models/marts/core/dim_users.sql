with

users as (

    select
        user_id,
        count(*) as n_records,
        count(distinct source) as n_sources
    from {{ ref('stg_identity__record_map') }}
    group by user_id

),

as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

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

),

home_provinces as (

    -- Where a person's parcels go is the best location signal the exports carry (WeChat stopped giving
    -- follower provinces in 2021); the province of most paid orders, the latest breaking ties.
    select
        user_id,
        receiver_province as province
    from {{ ref('fct_orders') }}
    where is_paid_order and receiver_province is not null and user_id is not null
    group by user_id, receiver_province
    qualify row_number() over (
        partition by user_id
        order by count(*) desc, max(paid_at) desc, receiver_province
    ) = 1

),

crm_cards as (

    select
        members.user_id,
        members.gender,
        members.birthday,
        members.registered_at,
        members.declared_tier,
        tiers.tier_code as declared_tier_code,
        tiers.tier_rank as declared_tier_rank
    from {{ ref('stg_crm__members') }} as members
    left join {{ ref('member_tiers') }} as tiers
        on members.declared_tier = tiers.tier_name

),

crm as (

    -- A person with two member cards: demographics from the latest card that states them, the declared tier
    -- from the highest-ranked card (a CRM name not in member_tiers stays visible as `unknown: <name>`).
    select
        user_id,
        arg_max(gender, registered_at) filter (where gender is not null) as gender,
        arg_max(birthday, registered_at) filter (where birthday is not null) as birthday,
        coalesce(
            arg_max(declared_tier_code, declared_tier_rank) filter (where declared_tier_code is not null),
            'unknown: ' || min(declared_tier) filter (where declared_tier is not null)
        ) as crm_declared_tier
    from crm_cards
    group by user_id

),

wecom as (

    select user_id, arg_max(gender, added_at) filter (where gender is not null) as gender
    from {{ ref('stg_wecom__contacts') }}
    group by user_id

),

current_standing as (

    select snapshots.*
    from {{ ref('int_user_month_snapshots') }} as snapshots
    cross join as_of
    where snapshots.snapshot_date = as_of.as_of_date

),

people as (

    select
        users.*,
        attribution.first_seen_at,
        attribution.cohort_month,
        attribution.acquisition_type,
        attribution.first_touch_at,
        attribution.first_touch_source,
        attribution.own_channel_code,
        attribution.channel_code,
        attribution.channel_name,
        attribution.channel_group,
        attribution.inviter_user_id,
        attribution.root_inviter_user_id,
        attribution.referral_depth,
        coalesce(crm.gender, wecom.gender) as gender,
        case
            when crm.gender is not null then 'crm'
            when wecom.gender is not null then 'wecom'
        end as gender_source,
        date_sub('year', crm.birthday, as_of.as_of_date) as age,
        crm.crm_declared_tier,
        as_of.as_of_date
    from users
    cross join as_of
    left join {{ ref('int_user_attribution') }} as attribution
        on users.user_id = attribution.user_id
    left join crm
        on users.user_id = crm.user_id
    left join wecom
        on users.user_id = wecom.user_id

)

select
    people.user_id,
    people.first_seen_at,
    people.n_records,
    people.n_sources,
    coalesce(identifiers.n_openids, 0) as n_openids,
    coalesce(identifiers.n_unionids, 0) as n_unionids,
    coalesce(identifiers.n_phones, 0) as n_phones,
    coalesce(identifiers.n_external_userids, 0) as n_external_userids,
    coalesce(identifiers.n_member_ids, 0) as n_member_ids,
    people.channel_code as first_touch_channel_code,
    people.channel_name as first_touch_channel_name,
    people.channel_group as first_touch_channel_group,
    orders.first_order_at,
    orders.last_order_at,
    coalesce(orders.lifetime_orders, 0) as lifetime_orders,
    cast(coalesce(orders.lifetime_net_gmv, 0) as decimal(18, 2)) as lifetime_net_gmv,
    people.cohort_month,
    people.acquisition_type,
    people.first_touch_at,
    people.first_touch_source,
    people.own_channel_code,
    people.inviter_user_id,
    people.root_inviter_user_id,
    people.referral_depth,
    coalesce(people.gender, 'unknown') as gender,
    people.gender_source,
    case
        when people.age is null or people.age < 0 then 'unknown'
        when people.age < 18 then 'under_18'
        when people.age < 25 then '18-24'
        when people.age < 35 then '25-34'
        when people.age < 45 then '35-44'
        when people.age < 55 then '45-54'
        else '55+'
    end as age_band,
    home_provinces.province,
    coalesce(provinces.region, 'unknown') as region,
    people.crm_declared_tier,
    current_standing.tier_code as current_tier,
    current_standing.trailing_365d_net_spend as current_trailing_365d_net_spend,
    current_standing.lifecycle_stage,
    people.as_of_date

from people
left join identifiers
    on people.user_id = identifiers.user_id
left join orders
    on people.user_id = orders.user_id
left join current_standing
    on people.user_id = current_standing.user_id
left join home_provinces
    on people.user_id = home_provinces.user_id
left join {{ ref('provinces') }} as provinces
    on home_provinces.province = provinces.province
