with

source as (

    select * from {{ source('wecom', 'wecom_contacts') }}

),

exports as (

    select
        *,
        row_number() over (
            partition by external_userid, staff_userid
            order by {{ export_recency_order() }}
        ) as export_recency
    from source

),

latest as (

    select * from exports where export_recency = 1

),

history as (

    -- The unionid appears only once the corp binds a developer id; a later export without it
    -- must not erase what an earlier one told us.
    select
        external_userid,
        staff_userid,
        count(*) as n_exports,
        arg_min({{ clean_text('unionid') }}, export_recency)
            filter (where {{ clean_text('unionid') }} is not null) as unionid
    from exports
    group by external_userid, staff_userid

),

record_map as (

    select * from {{ ref('stg_identity__record_map') }}
    where source = 'wecom_contacts'

)

select
    latest.record_id,
    latest.corp_id,
    latest.external_userid,
    latest.staff_userid,
    record_map.user_id,
    history.unionid,
    case latest.contact_type
        when 1 then 'wechat_user'
        when 2 then 'wecom_user'
    end as contact_type,
    case latest.gender
        when 1 then 'male'
        when 2 then 'female'
    end as gender,
    latest.added_at,
    latest.add_way,
    {{ clean_text('latest.state') }} as channel_code,
    latest.tags,
    history.n_exports,
    latest._loaded_at as last_loaded_at

from latest
inner join history
    on latest.external_userid = history.external_userid
    and latest.staff_userid = history.staff_userid
left join record_map
    on latest.record_id = record_map.record_id
