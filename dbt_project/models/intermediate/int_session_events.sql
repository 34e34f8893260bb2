-- The narrow stream sessions are built from: every event of every device, with only what a
-- session needs (time, type, page, referrer, campaign, user agent, the client's session id).
-- A view: fct_sessions reads it restricted to the devices and times its plan names.
select
    anonymous_id,
    event_id,
    occurred_at,
    type,
    session_id as client_session_id,
    page_path,
    referrer,
    referrer_host,
    utm_source,
    utm_medium,
    utm_campaign,
    user_agent

from {{ ref('stg_events') }}
