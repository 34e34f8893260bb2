{{
    config(
        materialized='distributed_table',
        distributed_by='person_id',
        indexes=[{'columns': ['person_id'], 'unique': true}],
    )
}}
-- One row per person after identity stitching: every identified user (`user:<user_id>`) and
-- every device never identified (`device:<anonymous_id>`). Seen from its sessions (persons as of
-- each session's start) and its identify events; first touch is its first session's landing.
with

sessions as (

    select * from {{ ref('fct_sessions') }}

),

by_sessions as (

    select
        person_id,
        min(session_start) as first_seen_at,
        max(session_end) as last_seen_at,
        count(*)::integer as session_count,
        array_agg(distinct anonymous_id) as devices,
        (array_agg(
            array[landing_page, referrer_host, utm_source, utm_medium, utm_campaign]
            order by session_start, anonymous_id collate "C"
        ))[1:1] as first_touch

    from sessions
    group by person_id

),

-- A user identified in the middle of another user's session has no session of their own yet.
by_identities as (

    select
        person_id,
        min(identified_at) as first_identified_at,
        max(identified_at) as last_identified_at,
        array_agg(distinct anonymous_id) as devices

    from {{ ref('int_device_persons') }}
    group by person_id

),

current_traits as (

    select person_id, jsonb_object_agg(trait, value) as traits
    from {{ ref('dim_person_traits') }}
    where is_current
    group by person_id

),

final as (

    select
        coalesce(by_sessions.person_id, by_identities.person_id) as person_id,
        case
            when coalesce(by_sessions.person_id, by_identities.person_id) like 'user:%'
                then substr(coalesce(by_sessions.person_id, by_identities.person_id), 6)
        end as user_id,
        by_identities.person_id is not null as is_identified,
        least(by_sessions.first_seen_at, by_identities.first_identified_at) as first_seen_at,
        greatest(by_sessions.last_seen_at, by_identities.last_identified_at) as last_seen_at,
        coalesce(by_sessions.session_count, 0) as session_count,
        array(
            select distinct device collate "C"
            from unnest(
                coalesce(by_sessions.devices, '{}') || coalesce(by_identities.devices, '{}')
            ) as device
            order by 1
        ) as devices,
        by_sessions.first_touch[1][1] as first_landing_page,
        by_sessions.first_touch[1][2] as first_referrer_host,
        by_sessions.first_touch[1][3] as first_utm_source,
        by_sessions.first_touch[1][4] as first_utm_medium,
        by_sessions.first_touch[1][5] as first_utm_campaign,
        coalesce(current_traits.traits, '{}') as traits

    from by_sessions
    full join by_identities on by_identities.person_id = by_sessions.person_id
    left join current_traits
        on current_traits.person_id = coalesce(by_sessions.person_id, by_identities.person_id)

)

select *, cardinality(devices)::integer as device_count from final
