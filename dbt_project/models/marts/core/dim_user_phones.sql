-- Analysts match a phone list by HMAC (computed with the same key by `oneid-warehouse hmac`), and see at most
-- the masked number: the 11-digit phone never reaches the marts schema that is published (docs/privacy.md).
select
    phone_keys.user_id,
    phone_keys.phone_masked,
    phone_keys.phone_hmac
from {{ ref('stg_identity__phone_keys') }} as phone_keys
inner join {{ ref('dim_users') }} as users
    on phone_keys.user_id = users.user_id
