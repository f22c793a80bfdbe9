-- The first touch that carried a channel code decides a person's acquisition channel; codes the brand has
-- not put in the lookup stay visible as themselves instead of disappearing into "other".
with

coded_touchpoints as (

    select
        user_id,
        channel_code,
        touched_at,
        source,
        record_id,
        row_number() over (
            partition by user_id
            order by touched_at, source, record_id
        ) as touch_rank
    from {{ ref('int_user_touchpoints') }}
    where channel_code is not null

)

select
    coded_touchpoints.user_id,
    coded_touchpoints.channel_code as first_touch_channel_code,
    coalesce(channel_codes.channel_name, 'unknown: ' || coded_touchpoints.channel_code) as first_touch_channel_name,
    coalesce(channel_codes.channel_group, 'unknown') as first_touch_channel_group,
    coded_touchpoints.touched_at as first_touch_at,
    coded_touchpoints.source as first_touch_source
from coded_touchpoints
left join {{ ref('channel_codes') }} as channel_codes
    on coded_touchpoints.channel_code = channel_codes.channel_code
where coded_touchpoints.touch_rank = 1
