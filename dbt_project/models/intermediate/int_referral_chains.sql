-- Walks each referred person's invitation chain up to its root: the first person of the chain who joined on
-- their own. A chain that comes back to someone already on it (a data error: A invited B who invited A) stops
-- there and is flagged, so the recursion always ends.
with recursive

edges as (

    select user_id, inviter_user_id
    from {{ ref('int_user_first_touch') }}
    where is_referred

),

chains (user_id, ancestor_user_id, depth, path, is_cycle) as (

    select
        user_id,
        inviter_user_id,
        1,
        [user_id, inviter_user_id],
        inviter_user_id = user_id
    from edges

    union all

    select
        chains.user_id,
        edges.inviter_user_id,
        chains.depth + 1,
        list_append(chains.path, edges.inviter_user_id),
        list_contains(chains.path, edges.inviter_user_id)
    from chains
    inner join edges
        on chains.ancestor_user_id = edges.user_id
    where not chains.is_cycle

)

select
    user_id,
    path[2] as inviter_user_id,
    -- In a cycle there is no root: the last step went back to someone already on the chain.
    case when not is_cycle then ancestor_user_id end as root_user_id,
    -- Fission depth: 1 for someone invited by a person who joined on their own, 2 for their invitee, ...
    -- (in a cycle, the number of distinct people above).
    case when is_cycle then depth - 1 else depth end as referral_depth,
    is_cycle,
    -- Everyone above the person, nearest first (inviter, their inviter, ..., root).
    list_slice(path, 2, len(path) - case when is_cycle then 1 else 0 end) as ancestor_user_ids
from chains
qualify row_number() over (partition by user_id order by depth desc) = 1
