-- One row per person per month end since they were first seen: the member tier their trailing-365-day net
-- spend earns and their lifecycle stage on that day (the last month's snapshot is taken on as_of_date).
select
    user_id,
    month_start,
    snapshot_date,
    trailing_365d_net_spend,
    tier_code,
    tier_rank,
    lifecycle_stage,
    paid_orders_to_date,
    net_gmv_to_date,
    first_order_at,
    last_order_at
from {{ ref('int_user_month_snapshots') }}
