-- Net GMV is one number however it is cut: over orders, over people, over the cohort funnel, over the
-- calendar-month funnel, over segments and over referral cohorts, to the cent. A gap means a person or an
-- order fell out of (or was counted twice in) one of the marts.

-- Dagster attaches a test to one asset; this one reads several, so it is pinned to the cohort funnel.
{{ config(meta={'dagster': {'ref': {'name': 'fct_gmv_funnel_cohort'}}}) }}
with

totals as (

    select 'fct_orders' as relation, coalesce(sum(net_amount), 0) as net_gmv from {{ ref('fct_orders') }}
    union all
    select 'dim_users', coalesce(sum(lifetime_net_gmv), 0) from {{ ref('dim_users') }}
    union all
    select 'fct_gmv_funnel_cohort', coalesce(sum(net_gmv), 0) from {{ ref('fct_gmv_funnel_cohort') }}
    union all
    select 'fct_gmv_funnel_monthly', coalesce(sum(net_gmv), 0) from {{ ref('fct_gmv_funnel_monthly') }}
    union all
    select 'fct_segment_counts', coalesce(sum(net_gmv), 0) from {{ ref('fct_segment_counts') }}
    union all
    select 'fct_referral_cohorts', coalesce(sum(net_gmv), 0) from {{ ref('fct_referral_cohorts') }}

)

select totals.relation, totals.net_gmv, reference.net_gmv as fct_orders_net_gmv
from totals
cross join (select net_gmv from totals where relation = 'fct_orders') as reference
where totals.net_gmv <> reference.net_gmv
