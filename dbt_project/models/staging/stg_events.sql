-- raw.events, columns named and ordered for readers. No CTE here, unlike the other models: a
-- view built on a CTE (even one PostgreSQL inlines) is planned apart from the query that reads
-- it, so defined_events could not probe raw.events' indexes once per condition (a join of
-- 500 conditions then scanned the events once per condition: benchmarks/RESULTS.md, section 3).
select
    -- ids
    event_id,
    anonymous_id,
    user_id,
    session_id,

    -- what happened
    type,
    name,

    -- where
    page_url,
    page_path,
    page_title,
    referrer,
    -- the referrer's host (lower case, no port or credentials): where a visit came from
    lower(substring(
        referrer from '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?(\[[^]]*\]|[^/?#:]+)'
    )) as referrer_host,

    -- campaign (the snippet copies the page URL's utm_* parameters into context.utm): the
    -- one place UTM fields are read; every model that needs them reads these columns
    context #>> '{utm,source}' as utm_source,
    context #>> '{utm,medium}' as utm_medium,
    context #>> '{utm,campaign}' as utm_campaign,

    -- the browser's User-Agent header (parsed once per distinct value: stg_user_agents)
    context ->> 'user_agent' as user_agent,

    -- on which element (element events only)
    target_tag,
    target_id,
    target_text,
    target_href,
    hierarchy,

    -- free-form
    properties,
    context,

    -- when
    occurred_at,
    received_at,
    loaded_at

from {{ source('raw', 'events') }}
