-- The version of the sessionization rules, in the shape the distributed_incremental
-- materialization compares with fct_sessions' ledger: the timeout (var session_timeout_minutes)
-- and the identity rules are part of it, so changing either re-derives every session.
-- Change 'sessions-v1' when the rules in fct_sessions' SQL change.
select
    'sessions'::text as session_rules,
    {{ session_timeout() }} as session_timeout,
    left(md5(
        'sessions-v1|' || ({{ session_timeout() }})::text || '|' || identity.content_hash
    ), 16) as content_hash

from {{ ref('int_identity_rules') }} as identity
