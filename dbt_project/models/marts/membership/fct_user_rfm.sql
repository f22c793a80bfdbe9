-- One row per buyer (at least one paid order by as_of_date): recency, frequency and monetary value as of
-- as_of_date and their quintile scores, 5 = best (most recent, most orders, most spend). Ties share a score.
with

as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

buyers as (

    select
        orders.user_id,
        date_diff('day', cast(max(orders.paid_at) as date), any_value(as_of.as_of_date)) as recency_days,
        count(*) as frequency,
        cast(sum(orders.net_amount) as decimal(18, 2)) as monetary
    from {{ ref('fct_orders') }} as orders
    cross join as_of
    where orders.is_paid_order
        and orders.paid_at < cast(as_of.as_of_date + interval 1 day as timestamp)
    group by orders.user_id

)

-- Quintile = 1 + floor(5 * (rank - 1) / buyers): the share of buyers ranked strictly worse, in fifths.
select
    user_id,
    recency_days,
    frequency,
    monetary,
    cast(1 + floor(5 * (rank() over (order by recency_days desc) - 1) / count(*) over ()) as integer) as r_score,
    cast(1 + floor(5 * (rank() over (order by frequency) - 1) / count(*) over ()) as integer) as f_score,
    cast(1 + floor(5 * (rank() over (order by monetary) - 1) / count(*) over ()) as integer) as m_score,
    (select as_of_date from as_of) as as_of_date
from buyers
