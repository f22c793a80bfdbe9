-- One row per segment operators target 1-to-1: gender x age band x region x lifecycle stage (as of
-- as_of_date), with its people, buyers and lifetime net GMV.
select
    gender,
    age_band,
    region,
    coalesce(lifecycle_stage, '(not yet seen)') as lifecycle_stage,
    count(*) as users,
    count(*) filter (where lifetime_orders > 0) as buyers,
    cast(sum(lifetime_net_gmv) as decimal(18, 2)) as net_gmv
from {{ ref('dim_users') }}
group by all
