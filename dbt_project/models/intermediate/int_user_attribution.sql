-- The acquisition channel credited to each person. Someone who joined on their own gets the channel of their
-- first acquisition touch; someone who was invited gets the channel of the root of their invitation chain
-- (the person who started it), so a channel is credited with the friends its customers bring.
with

users as (

    select distinct user_id from {{ ref('stg_identity__record_map') }}

),

first_seen as (

    select user_id, min(touched_at) as first_seen_at
    from {{ ref('int_user_touchpoints') }}
    group by user_id

),

first_touch as (

    select * from {{ ref('int_user_first_touch') }}

),

chains as (

    select * from {{ ref('int_referral_chains') }}

),

credited as (

    select
        users.user_id,
        first_seen.first_seen_at,
        case
            when first_touch.user_id is null then 'none'
            when first_touch.is_referred then 'referred'
            else 'direct'
        end as acquisition_type,
        first_touch.first_touch_at,
        first_touch.first_touch_source,
        first_touch.first_touch_kind,
        first_touch.own_channel_code,
        chains.inviter_user_id,
        chains.root_user_id as root_inviter_user_id,
        chains.referral_depth,
        coalesce(chains.is_cycle, false) as is_referral_cycle,
        case
            when first_touch.user_id is null then '(none)'
            when not first_touch.is_referred then first_touch.own_channel_code
            when chains.is_cycle then '(referral cycle)'
            -- a root who never had an acquisition touch of their own (only orders and invites sent)
            else coalesce(root_touch.own_channel_code, '(none)')
        end as channel_code
    from users
    left join first_seen
        on users.user_id = first_seen.user_id
    left join first_touch
        on users.user_id = first_touch.user_id
    left join chains
        on users.user_id = chains.user_id
    left join first_touch as root_touch
        on chains.root_user_id = root_touch.user_id

)

select
    credited.user_id,
    credited.first_seen_at,
    cast(date_trunc('month', credited.first_seen_at) as date) as cohort_month,
    credited.acquisition_type,
    credited.first_touch_at,
    credited.first_touch_source,
    credited.first_touch_kind,
    credited.own_channel_code,
    credited.inviter_user_id,
    credited.root_inviter_user_id,
    credited.referral_depth,
    credited.is_referral_cycle,
    credited.channel_code,
    case
        when channel_codes.channel_name is not null then channel_codes.channel_name
        when credited.channel_code in ('(none)', '(referral cycle)') then credited.channel_code
        else 'unknown: ' || credited.channel_code
    end as channel_name,
    case
        when channel_codes.channel_group is not null then channel_codes.channel_group
        when credited.channel_code = '(none)' then 'none'
        else 'unknown'
    end as channel_group
from credited
left join {{ ref('channel_codes') }} as channel_codes
    on credited.channel_code = channel_codes.channel_code
