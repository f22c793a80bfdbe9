-- Only the masked and keyed forms: the plain phone stays in raw and identity (docs/privacy.md).
select
    user_id,
    phone_masked,
    phone_hmac
from {{ source('identity', 'phone_keys') }}
