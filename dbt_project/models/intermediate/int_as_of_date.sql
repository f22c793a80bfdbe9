-- "Now" for every model that needs it (lifecycle, tiers, RFM recency, LTV maturity). One row. The var
-- as_of_date wins; otherwise the latest date in the data, so a rerun on the same data gives the same marts
-- and tests never depend on the wall clock.
with

latest as (

    select max(touched_at) as latest_at from {{ ref('int_user_touchpoints') }}
    union all
    select max(paid_at) from {{ ref('stg_shop__orders') }}

),

latest_in_data as (

    select cast(max(latest_at) as date) as latest_date from latest

)

select
    {% if var('as_of_date') -%}
    cast('{{ var("as_of_date") }}' as date) as as_of_date,
    'var' as as_of_date_source
    {%- else -%}
    latest_date as as_of_date,
    'latest_in_data' as as_of_date_source
    {%- endif %}
from latest_in_data
