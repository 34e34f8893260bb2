{{
    config(
        materialized='distributed_table',
        indexes=[{'columns': ['anonymous_id'], 'unique': true}],
    )
}}
-- One row per device (anonymous_id): when it was seen, its first touch, what it runs (from its
-- latest session's user agent) and the person it belongs to now.
with

by_sessions as (

    select
        anonymous_id,
        min(session_start) as first_seen_at,
        max(session_end) as last_seen_at,
        count(*)::integer as session_count,
        sum(event_count)::integer as event_count,
        (array_agg(
            array[landing_page, referrer_host, utm_source, utm_medium, utm_campaign]
            order by session_start
        ))[1:1] as first_touch,
        (array_agg(
            array[browser_family, browser_version, os_family, os_version, device_family]
            order by session_start desc
        ))[1:1] as latest_agent,
        bool_or(is_bot) as is_bot

    from {{ ref('fct_sessions') }}
    group by anonymous_id

),

current_persons as (

    select anonymous_id, person_id, user_id
    from {{ ref('int_device_persons') }}
    where valid_until = 'infinity'::timestamptz

)

select
    by_sessions.anonymous_id,
    by_sessions.first_seen_at,
    by_sessions.last_seen_at,
    by_sessions.session_count,
    by_sessions.event_count,
    by_sessions.first_touch[1][1] as first_landing_page,
    by_sessions.first_touch[1][2] as first_referrer_host,
    by_sessions.first_touch[1][3] as first_utm_source,
    by_sessions.first_touch[1][4] as first_utm_medium,
    by_sessions.first_touch[1][5] as first_utm_campaign,
    by_sessions.latest_agent[1][1] as browser_family,
    by_sessions.latest_agent[1][2] as browser_version,
    by_sessions.latest_agent[1][3] as os_family,
    by_sessions.latest_agent[1][4] as os_version,
    by_sessions.latest_agent[1][5] as device_family,
    by_sessions.is_bot,
    coalesce(current_persons.person_id, 'device:' || by_sessions.anonymous_id) as person_id,
    current_persons.user_id

from by_sessions
left join current_persons on current_persons.anonymous_id = by_sessions.anonymous_id
