-- How a person entered the private domain: their earliest *acquisition* touchpoint (a follow, a WeCom add, a
-- CRM registration, a mini-program login, or being invited by someone else). Orders are not acquisition
-- touches: a parcel-card customer's Taobao order comes before the WeCom add whose `state` says parcel_card.
-- Later touches, even coded ones (a store QR code, an SMS recall link), never change this, with one exception:
-- when the first touch carries no code at all (a mini-program login, a WeCom add by phone search, a CRM card
-- without a source), the first coded touch within var attribution_window_days after it takes the credit (the
-- parcel card is scanned days after the order; the login right after a Taobao order says nothing).
with

invites as (

    select record_id, inviter_user_id, is_self_invite
    from {{ ref('stg_referral__invites') }}

),

acquisition_touches as (

    select
        touchpoints.user_id,
        touchpoints.source,
        touchpoints.record_id,
        touchpoints.touchpoint,
        touchpoints.touched_at,
        touchpoints.channel_code,
        invites.inviter_user_id,
        -- Same-second ties: being invited explains the other records, then the coded sources.
        case touchpoints.touchpoint
            when 'referral_received' then 1
            when 'wecom_add' then 2
            when 'oa_follow' then 3
            when 'crm_registration' then 4
            when 'mp_login' then 5
        end as tie_rank
    from {{ ref('int_user_touchpoints') }} as touchpoints
    left join invites
        on touchpoints.touchpoint = 'referral_received'
        and touchpoints.record_id = invites.record_id || '/invitee'
    where touchpoints.touchpoint in ('referral_received', 'wecom_add', 'oa_follow', 'crm_registration', 'mp_login')
        -- inviting your own second account is not being brought by someone else
        and not (touchpoints.touchpoint = 'referral_received' and coalesce(invites.is_self_invite, true))

),

first_touch as (

    select * from acquisition_touches
    qualify row_number() over (partition by user_id order by touched_at, tie_rank, record_id) = 1

),

coded_follow_up as (

    select acquisition_touches.*
    from acquisition_touches
    inner join first_touch
        on acquisition_touches.user_id = first_touch.user_id
    where first_touch.channel_code is null
        and first_touch.touchpoint <> 'referral_received'
        and acquisition_touches.touchpoint <> 'referral_received'
        and acquisition_touches.channel_code is not null
        and acquisition_touches.touched_at
            <= first_touch.touched_at + to_days({{ var('attribution_window_days') }})
    qualify row_number() over (
        partition by acquisition_touches.user_id
        order by acquisition_touches.touched_at, acquisition_touches.tie_rank, acquisition_touches.record_id
    ) = 1

),

credited_touch as (

    select * from coded_follow_up
    union all
    select * from first_touch
    where user_id not in (select user_id from coded_follow_up)

)

select
    user_id,
    touched_at as first_touch_at,
    source as first_touch_source,
    record_id as first_touch_record_id,
    touchpoint as first_touch_kind,
    touchpoint = 'referral_received' as is_referred,
    case when touchpoint = 'referral_received' then inviter_user_id end as inviter_user_id,
    -- The person's own code: NULL when referred (they inherit their root inviter's channel downstream),
    -- `organic` for an uncoded touch with no coded one soon after.
    case when touchpoint <> 'referral_received' then coalesce(channel_code, 'organic') end as own_channel_code
from credited_touch
