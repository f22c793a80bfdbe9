with

source as (

    select * from {{ source('crm', 'crm_members') }}

),

latest as (

    select
        *,
        count(*) over (partition by member_id) as n_exports
    from source
    qualify row_number() over (partition by member_id order by {{ export_recency_order() }}) = 1

),

record_map as (

    select * from {{ ref('stg_identity__record_map') }}
    where source = 'crm_members'

)

-- Name and phone stay in raw (PIPL minimisation): the person is reachable through user_id.
select
    latest.record_id,
    latest.crm_name,
    latest.member_id,
    record_map.user_id,
    latest.gender,
    latest.birthday,
    latest.declared_tier,
    latest.points,
    latest.registered_at,
    cast(latest.lifetime_spend as decimal(18, 2)) as lifetime_spend,
    {{ clean_text('latest.source_channel') }} as channel_code,
    latest.n_exports,
    latest._loaded_at as last_loaded_at

from latest
left join record_map
    on latest.record_id = record_map.record_id
