-- The tier history is complete: replaying each person's changes from the lowest tier ends at the tier
-- dim_users shows on as_of_date.

{{ config(meta={'dagster': {'ref': {'name': 'fct_member_tier_changes'}}}) }}
with

lowest as (

    select tier_code from {{ ref('member_tiers') }}
    qualify row_number() over (order by tier_rank) = 1

),

last_change as (

    select user_id, to_tier_code
    from {{ ref('fct_member_tier_changes') }}
    qualify row_number() over (partition by user_id order by month_start desc) = 1

)

select dim_users.user_id, dim_users.current_tier, coalesce(last_change.to_tier_code, lowest.tier_code) as replayed_tier
from {{ ref('dim_users') }} as dim_users
cross join lowest
left join last_change
    on dim_users.user_id = last_change.user_id
where dim_users.current_tier is not null
    and dim_users.current_tier <> coalesce(last_change.to_tier_code, lowest.tier_code)
