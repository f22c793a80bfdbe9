select
    source,
    record_id,
    user_id
from {{ source('identity', 'record_map') }}
