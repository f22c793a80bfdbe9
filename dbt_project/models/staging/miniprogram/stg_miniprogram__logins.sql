with

source as (

    select * from {{ source('miniprogram', 'mp_logins') }}

),

-- Overlapping log exports repeat the same log line; keep one copy.
latest as (

    select * from source
    qualify row_number() over (partition by log_id order by {{ export_recency_order() }}) = 1

),

record_map as (

    select * from {{ ref('stg_identity__record_map') }}
    where source = 'mp_logins'

)

select
    latest.record_id,
    latest.log_id,
    latest.appid,
    latest.openid,
    record_map.user_id,
    {{ clean_text('latest.unionid') }} as unionid,
    -- The number itself stays in raw/identity (PIPL: keep phones away from analysts who don't
    -- need them); whether the user authorized one is what operators measure.
    {{ clean_text('latest.phone') }} is not null as has_authorized_phone,
    latest.logged_in_at,
    latest._loaded_at as last_loaded_at

from latest
left join record_map
    on latest.record_id = record_map.record_id
