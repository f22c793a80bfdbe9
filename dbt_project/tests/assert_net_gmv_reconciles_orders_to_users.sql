-- Person-level GMV must add up to order-level GMV to the cent: a gap means orders without a
-- user in dim_users, or an order counted twice.

-- Dagster attaches a test to one asset; this one reads two, so it is pinned to dim_users.
{{ config(meta={'dagster': {'ref': {'name': 'dim_users'}}}) }}
with

order_level as (

    select coalesce(sum(net_amount), 0) as net_gmv from {{ ref('fct_orders') }}

),

user_level as (

    select coalesce(sum(lifetime_net_gmv), 0) as net_gmv from {{ ref('dim_users') }}

)

select
    order_level.net_gmv as order_level_net_gmv,
    user_level.net_gmv as user_level_net_gmv
from order_level
cross join user_level
where order_level.net_gmv <> user_level.net_gmv
