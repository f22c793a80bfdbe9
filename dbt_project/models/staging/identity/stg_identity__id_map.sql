select
    id_type,
    -- Global id types carry an empty scope in the contract; keep it as '' (not NULL) so the
    -- (id_type, scope, id_value) key stays comparable with identity.observations.
    coalesce(scope, '') as scope,
    id_value,
    user_id
from {{ source('identity', 'id_map') }}
