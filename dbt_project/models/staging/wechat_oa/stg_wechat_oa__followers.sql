with

source as (

    select * from {{ source('wechat_oa', 'oa_followers') }}

),

exports as (

    select
        *,
        row_number() over (
            partition by appid, openid
            order by {{ export_recency_order() }}
        ) as export_recency
    from source

),

latest as (

    select * from exports where export_recency = 1

),

-- An unfollow record carries only the openid, so the follower's profile (scene, channel code,
-- tags) has to come from the latest export in which they were still following.
latest_following as (

    select * from exports
    where subscribe = 1
    qualify row_number() over (partition by appid, openid order by export_recency) = 1

),

history as (

    select
        appid,
        openid,
        count(*) as n_exports,
        min(subscribed_at) as first_subscribed_at,
        arg_min({{ clean_text('unionid') }}, export_recency)
            filter (where {{ clean_text('unionid') }} is not null) as unionid
    from exports
    group by appid, openid

),

record_map as (

    select * from {{ ref('stg_identity__record_map') }}
    where source = 'oa_followers'

)

select
    latest.record_id,
    latest.appid,
    latest.openid,
    record_map.user_id,
    history.unionid,
    latest.subscribe = 1 as is_following,
    history.first_subscribed_at,
    latest_following.subscribed_at as last_subscribed_at,
    latest_following.subscribe_scene,
    latest_following.qr_scene,
    {{ clean_text('latest_following.qr_scene_str') }} as qr_scene_str,
    latest_following.tagid_list,
    history.n_exports,
    latest._loaded_at as last_loaded_at

from latest
inner join history
    on latest.appid = history.appid
    and latest.openid = history.openid
left join latest_following
    on latest.appid = latest_following.appid
    and latest.openid = latest_following.openid
left join record_map
    on latest.record_id = record_map.record_id
