-- One row per person per month end at which their computed tier differs from the month before (before their
-- first month everyone is at the lowest tier, so a first non-ordinary tier is an upgrade).
with

lowest as (

    select tier_code, tier_rank from {{ ref('member_tiers') }}
    qualify row_number() over (order by tier_rank) = 1

),

snapshots as (

    select
        user_id,
        month_start,
        snapshot_date,
        trailing_365d_net_spend,
        tier_code,
        tier_rank,
        lag(tier_code) over by_user as previous_tier_code,
        lag(tier_rank) over by_user as previous_tier_rank
    from {{ ref('int_user_month_snapshots') }}
    window by_user as (partition by user_id order by month_start)

)

select
    snapshots.user_id,
    snapshots.month_start,
    snapshots.snapshot_date,
    coalesce(snapshots.previous_tier_code, lowest.tier_code) as from_tier_code,
    snapshots.tier_code as to_tier_code,
    case
        when snapshots.tier_rank > coalesce(snapshots.previous_tier_rank, lowest.tier_rank) then 'upgrade'
        else 'downgrade'
    end as change_type,
    snapshots.trailing_365d_net_spend
from snapshots
cross join lowest
where snapshots.tier_rank <> coalesce(snapshots.previous_tier_rank, lowest.tier_rank)
