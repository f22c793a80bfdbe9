-- One row per monthly cohort (month first seen): how much the cohort's people invited, its K-factor, how deep
-- the fission of its referred members goes, and how much of its GMV came from people who were referred.
with

users as (

    select
        attribution.user_id,
        attribution.cohort_month,
        attribution.acquisition_type,
        attribution.referral_depth,
        attribution.inviter_user_id,
        dim_users.lifetime_net_gmv
    from {{ ref('int_user_attribution') }} as attribution
    inner join {{ ref('dim_users') }} as dim_users
        on attribution.user_id = dim_users.user_id
    where attribution.cohort_month is not null

),

invites_sent as (

    select inviter_user_id as user_id, count(*) as invites_sent
    from {{ ref('stg_referral__invites') }}
    where not is_self_invite
    group by inviter_user_id

),

referrals_made as (

    -- people who joined through an invite from this person, whatever month they joined in
    select inviter_user_id as user_id, count(*) as referred_users
    from users
    where acquisition_type = 'referred'
    group by inviter_user_id

)

select
    users.cohort_month,
    count(*) as users,
    count(invites_sent.user_id) as inviters,
    cast(coalesce(sum(invites_sent.invites_sent), 0) as bigint) as invites_sent,
    cast(coalesce(sum(referrals_made.referred_users), 0) as bigint) as referrals_made,
    -- K-factor: people brought in by the cohort's members, per member (self-invites never count).
    {{ safe_divide('coalesce(sum(referrals_made.referred_users), 0)', 'count(*)') }} as k_factor,
    count(*) filter (where users.acquisition_type = 'referred') as referred_users,
    coalesce(max(users.referral_depth), 0) as max_fission_depth,
    avg(users.referral_depth) as avg_fission_depth,
    cast(sum(users.lifetime_net_gmv) as decimal(18, 2)) as net_gmv,
    cast(coalesce(sum(users.lifetime_net_gmv) filter (where users.acquisition_type = 'referred'), 0)
        as decimal(18, 2)) as referred_net_gmv,
    {{ safe_divide(
        "coalesce(sum(users.lifetime_net_gmv) filter (where users.acquisition_type = 'referred'), 0)",
        'sum(users.lifetime_net_gmv)'
    ) }} as referred_gmv_share
from users
left join invites_sent
    on users.user_id = invites_sent.user_id
left join referrals_made
    on users.user_id = referrals_made.user_id
group by users.cohort_month
