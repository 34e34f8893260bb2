{{
    config(
        materialized='distributed_table',
        distributed_by='unit_id',
        indexes=[{'columns': ['path_name', 'unit_id']}],
    )
}}
-- depends_on: {{ ref('int_path_versions') }}
-- depends_on: {{ ref('int_sessions_plan') }}
-- What a windowed run [start - lookback_hours, end) of fct_paths recomputes: per path and unit,
-- the point from which its segments are derived again (and its stored segments from there on
-- deleted). A segment depends on the stream events around it (a late event may extend one or
-- join two), so the point is a segment boundary before every change:
--   - gap in minutes: units with stream events in the window, from the start of their earliest
--     stored segment that ends at most one gap before the first window event (the segment the
--     event extends or joins), else from that event. Stored segments are a gap or more apart,
--     so the event before the point is a gap or more before it, also after the late events;
--   - `gap: session`: the devices whose sessions this run re-derives (int_sessions_plan), from
--     the start of their range, which is a session boundary; for `unit: user` every person the
--     device belongs to;
--   - `unit: user`: a device whose identity periods the window changes (int_sessions_plan's
--     rule: an identify of another user than its last one before the window, or its first)
--     moves its events between persons from its first event on (int_sessions_plan's point for
--     it): its persons and its own `device:` unit are redone from a segment boundary before
--     that event, as for events in the window. These rows are `identity_changed`: their points
--     reach back before the window, so fct_paths reads their devices one index range each.
-- New and edited paths are not planned: fct_paths derives them over all history (its ledger
-- says which). Without a window the plan is empty: the run rebuilds everything.
{%- set stored = stored_relation_of('fct_paths') %}
{%- set window = retro_window() %}

with

paths as (

    select path_name, unit, gap, gap_session from {{ ref('stg_paths') }}

),

persons as (

    select anonymous_id, person_id, valid_from, valid_until from {{ ref('int_device_persons') }}

),

{% if window is not none %}
-- Devices whose identity periods the window changes, from their first event (int_sessions_plan
-- redoes them from their first stored session).
moved_devices as (

    select anonymous_id, recompute_from as first_at
    from {{ ref('int_sessions_plan') }}
    where identity_changed

),

-- Per gap path and unit, the first event a run adds to its stream: its first window event, and
-- for a user unit that a moved device's events join or leave, that device's first event.
first_changes as (

    select
        events.path_name,
        case
            when paths.unit = 'device' then events.anonymous_id
            else coalesce(persons.person_id, 'device:' || events.anonymous_id)
        end as unit_id,
        'events in the window' as reason,
        min(events.occurred_at) as first_at,
        false as identity_changed

    from {{ ref('int_path_events') }} as events
    inner join paths on paths.path_name = events.path_name
    left join persons
        on paths.unit = 'user'
        and persons.anonymous_id = events.anonymous_id
        and events.occurred_at >= persons.valid_from
        and events.occurred_at < persons.valid_until
    where {{ retro_in_window('events.occurred_at') }} and not paths.gap_session
    group by 1, 2

    union all

    select paths.path_name, moved.unit_id, 'identity changed', moved.first_at, true
    from paths
    cross join (
        select anonymous_id, first_at, 'device:' || anonymous_id as unit_id from moved_devices
        union all
        select moved_devices.anonymous_id, moved_devices.first_at, persons.person_id
        from moved_devices
        inner join persons on persons.anonymous_id = moved_devices.anonymous_id
    ) as moved
    where paths.unit = 'user' and not paths.gap_session

),

-- From the start of the stored segment that event may extend or join.
by_gap as (

    select
        changes.path_name,
        changes.unit_id,
        changes.reason,
        {% if stored is not none -%}
        least(changes.first_at, min(segments.segment_start))
        {%- else -%}
        changes.first_at
        {%- endif %} as recompute_from,
        changes.identity_changed

    from first_changes as changes
    inner join paths on paths.path_name = changes.path_name
    {% if stored is not none -%}
    left join {{ stored }} as segments
        on segments.path_name = changes.path_name
        and segments.unit_id = changes.unit_id
        and segments.segment_end >= changes.first_at - paths.gap
    {%- endif %}
    group by changes.path_name, changes.unit_id, changes.reason, changes.first_at,
        changes.identity_changed

),

by_session as (

    select
        paths.path_name,
        units.unit_id,
        'sessions changed' as reason,
        sessions.recompute_from,
        sessions.identity_changed

    from {{ ref('int_sessions_plan') }} as sessions
    cross join paths
    inner join (
        select anonymous_id, anonymous_id as unit_id, 'device' as unit
        from {{ ref('int_sessions_plan') }}
        union all
        select anonymous_id, 'device:' || anonymous_id, 'user'
        from {{ ref('int_sessions_plan') }}
        union all
        select persons.anonymous_id, persons.person_id, 'user'
        from persons
        inner join {{ ref('int_sessions_plan') }} as planned
            on planned.anonymous_id = persons.anonymous_id
    ) as units
        on units.anonymous_id = sessions.anonymous_id and units.unit = paths.unit
    where paths.gap_session

),

reasons as (

    select * from by_gap
    union all
    select * from by_session

),

-- A unit planned for several reasons is redone from the earliest point.
final as (

    select distinct on (path_name, unit_id)
        path_name, unit_id, reason, recompute_from, identity_changed
    from reasons
    order by path_name, unit_id, recompute_from

)
{% else %}
final as (

    select null::text as path_name, null::text as unit_id, null::text as reason,
        null::timestamptz as recompute_from, null::boolean as identity_changed
    where false

)
{% endif %}

select * from final
