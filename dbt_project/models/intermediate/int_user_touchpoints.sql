-- Every dated trace a person left, one shape for all sources: the base for first-seen dates now
-- and first-touch channel attribution later.
with

oa_follows as (

    select
        user_id,
        'oa_followers' as source,
        record_id,
        'oa_follow' as touchpoint,
        first_subscribed_at as touched_at,
        -- The brand's own QR parameter when there is one; otherwise WeChat's subscribe_scene (search,
        -- profile card, ads, ...), which the channel_codes seed also maps, so an uncoded follow still says how.
        coalesce(qr_scene_str, subscribe_scene) as channel_code
    from {{ ref('stg_wechat_oa__followers') }}

),

mp_logins as (

    select
        user_id,
        'mp_logins' as source,
        record_id,
        'mp_login' as touchpoint,
        logged_in_at as touched_at,
        cast(null as varchar) as channel_code
    from {{ ref('stg_miniprogram__logins') }}

),

wecom_adds as (

    select
        user_id,
        'wecom_contacts' as source,
        record_id,
        'wecom_add' as touchpoint,
        added_at as touched_at,
        channel_code
    from {{ ref('stg_wecom__contacts') }}

),

orders_created as (

    select
        user_id,
        'orders' as source,
        record_id,
        'order_created' as touchpoint,
        created_at as touched_at,
        cast(null as varchar) as channel_code
    from {{ ref('stg_shop__orders') }}

),

crm_registrations as (

    select
        user_id,
        'crm_members' as source,
        record_id,
        'crm_registration' as touchpoint,
        registered_at as touched_at,
        channel_code
    from {{ ref('stg_crm__members') }}

),

-- record_id here is identity's per-side record, so a touchpoint joins back to record_map.
referral_inviters as (

    select
        inviter_user_id as user_id,
        'referrals' as source,
        record_id || '/inviter' as record_id,
        'referral_sent' as touchpoint,
        invited_at as touched_at,
        cast(null as varchar) as channel_code
    from {{ ref('stg_referral__invites') }}

),

referral_invitees as (

    select
        invitee_user_id as user_id,
        'referrals' as source,
        record_id || '/invitee' as record_id,
        'referral_received' as touchpoint,
        invited_at as touched_at,
        cast(null as varchar) as channel_code
    from {{ ref('stg_referral__invites') }}

),

unioned as (

    select * from oa_follows
    union all
    select * from mp_logins
    union all
    select * from wecom_adds
    union all
    select * from orders_created
    union all
    select * from crm_registrations
    union all
    select * from referral_inviters
    union all
    select * from referral_invitees

)

-- A record with no date (a follower only ever exported as unfollowed) says nothing about when.
select * from unioned
where touched_at is not null
