-- One row per person who invited someone else (self-invites left out): how many they invited, how many joined
-- through them, what those people bought, and how far the fission below them reaches.
with

invites as (

    select inviter_user_id, invitee_user_id, invited_at
    from {{ ref('stg_referral__invites') }}
    where not is_self_invite

),

attribution as (

    select * from {{ ref('int_user_attribution') }}

),

user_gmv as (

    select user_id, lifetime_orders, lifetime_net_gmv from {{ ref('dim_users') }}

),

sent as (

    select
        inviter_user_id as user_id,
        count(*) as invites_sent,
        count(distinct invitee_user_id) as distinct_invitees,
        min(invited_at) as first_invite_at,
        max(invited_at) as last_invite_at
    from invites
    group by inviter_user_id

),

-- Direct referrals: people whose own first touch was an invite from this person.
children as (

    select
        attribution.inviter_user_id as user_id,
        count(*) as referred_users,
        count(*) filter (where user_gmv.lifetime_orders > 0) as referred_buyers,
        sum(user_gmv.lifetime_net_gmv) as referred_net_gmv
    from attribution
    inner join user_gmv
        on attribution.user_id = user_gmv.user_id
    where attribution.acquisition_type = 'referred'
    group by attribution.inviter_user_id

),

-- Everyone below the person in any invitation chain, however deep.
descendants as (

    select
        ancestor.user_id,
        count(*) as fission_users,
        max(ancestor.position) as fission_depth,
        sum(user_gmv.lifetime_net_gmv) as fission_net_gmv
    from {{ ref('int_referral_chains') }} as chains
    cross join unnest(chains.ancestor_user_ids) with ordinality as ancestor(user_id, position)
    inner join user_gmv
        on chains.user_id = user_gmv.user_id
    group by ancestor.user_id

)

select
    sent.user_id,
    attribution.channel_code,
    attribution.cohort_month,
    attribution.acquisition_type,
    coalesce(attribution.referral_depth, 0) as own_referral_depth,
    sent.invites_sent,
    sent.distinct_invitees,
    sent.first_invite_at,
    sent.last_invite_at,
    coalesce(children.referred_users, 0) as referred_users,
    coalesce(children.referred_buyers, 0) as referred_buyers,
    cast(coalesce(children.referred_net_gmv, 0) as decimal(18, 2)) as referred_net_gmv,
    coalesce(descendants.fission_users, 0) as fission_users,
    coalesce(descendants.fission_depth, 0) as fission_depth,
    cast(coalesce(descendants.fission_net_gmv, 0) as decimal(18, 2)) as fission_net_gmv
from sent
left join attribution
    on sent.user_id = attribution.user_id
left join children
    on sent.user_id = children.user_id
left join descendants
    on sent.user_id = descendants.user_id
