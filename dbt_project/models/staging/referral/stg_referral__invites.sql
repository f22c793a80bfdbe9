with

source as (

    select * from {{ source('referral', 'referrals') }}

),

latest as (

    select * from source
    qualify row_number() over (partition by invite_id order by {{ export_recency_order() }}) = 1

),

-- Identity resolves the two people of an invite separately, as two records of one raw row.
record_map as (

    select * from {{ ref('stg_identity__record_map') }}
    where source = 'referrals'

)

select
    latest.record_id,
    latest.invite_id,
    latest.appid,
    {{ clean_text('latest.inviter_openid') }} as inviter_openid,
    {{ clean_text('latest.inviter_unionid') }} as inviter_unionid,
    inviter.user_id as inviter_user_id,
    {{ clean_text('latest.invitee_openid') }} as invitee_openid,
    {{ clean_text('latest.invitee_unionid') }} as invitee_unionid,
    invitee.user_id as invitee_user_id,
    -- Inviting your own second account is not fission; K-factor must leave these out.
    inviter.user_id = invitee.user_id as is_self_invite,
    latest.invited_at,
    {{ clean_text('latest.campaign') }} as campaign,
    latest._loaded_at as last_loaded_at

from latest
left join record_map as inviter
    on inviter.record_id = latest.record_id || '/inviter'
left join record_map as invitee
    on invitee.record_id = latest.record_id || '/invitee'
