{{
    config(
        materialized='distributed_table',
        indexes=[{'columns': ['anonymous_id'], 'unique': true}],
    )
}}
-- What a windowed run of fct_sessions recomputes: one row per device with an event in the window
-- [start - lookback_hours, end), and the time range of its events to sessionize again.
--
-- Sessions depend on the events around them: an event joins a session when it lies less than
-- the timeout from one of its events, and a late event may merge two sessions. The stored
-- sessions a window event can touch are those that end at most one timeout before the device's
-- first window event and start at most one timeout after its last; the range spans them and the
-- window's events, and holds every event of every session it changes (sessions are at least a
-- timeout apart), so rebuilding it reproduces every session whole, also one that crosses a
-- partition edge. A device whose identity periods (int_device_persons) the window changes is
-- redone whole, as its first period reaches back to its first session: one with an identify of
-- another user than its last identify before the window, or with its first identify ever. A
-- returning customer logging in again as the same user changes no period and is not redone.
-- "Whole" starts at its first stored session (or its first window event), not at -infinity:
-- fct_sessions then reads only the daily partitions from there on, not one per day of history.
--
-- Reads what the previous run stored in fct_sessions by name (not ref: fct_sessions reads this
-- plan). Empty without a window: such a run rebuilds every session.
{%- set stored = stored_relation_of('fct_sessions') %}
{%- set window = retro_window() %}
-- depends_on: {{ ref('int_session_rules') }}

with

window_events as (

    select
        anonymous_id,
        min(occurred_at) as first_at,
        max(occurred_at) as last_at

    from {{ ref('int_session_events') }}
    where {{ retro_in_window('occurred_at') }}
        and {{ 'true' if retro_window() is not none else 'false' }}
    group by anonymous_id

),

window_identifies as (

    select anonymous_id, user_id
    from {{ ref('int_identify_events') }}
    where {{ retro_in_window('occurred_at') }}

),

last_identify_before as (

    select distinct on (identifies.anonymous_id) identifies.anonymous_id, identifies.user_id
    from {{ ref('int_identify_events') }} as identifies
    where identifies.anonymous_id in (select anonymous_id from window_identifies)
        and {% if window is none %}false{% else -%}
        identifies.occurred_at < '{{ window.since }}'::timestamptz{% endif %}
    order by identifies.anonymous_id, identifies.occurred_at desc, identifies.event_id desc

),

identified as (

    select window_identifies.anonymous_id
    from window_identifies
    left join last_identify_before
        on last_identify_before.anonymous_id = window_identifies.anonymous_id
    where last_identify_before.user_id is distinct from window_identifies.user_id
    group by window_identifies.anonymous_id

),

touched_sessions as (

    {% if stored is not none -%}
    select
        sessions.anonymous_id,
        min(sessions.session_start) as first_start,
        max(sessions.session_end) as last_end

    from {{ stored }} as sessions
    inner join window_events on window_events.anonymous_id = sessions.anonymous_id
    cross join {{ ref('int_session_rules') }} as rules
    where sessions.session_end >= window_events.first_at - rules.session_timeout
        and sessions.session_start <= window_events.last_at + rules.session_timeout
    group by sessions.anonymous_id
    {%- else -%}
    select null::text as anonymous_id, null::timestamptz as first_start, null::timestamptz as last_end
    where false
    {%- endif %}

),

-- The first stored session of each device redone whole.
first_sessions as (

    {% if stored is not none -%}
    select sessions.anonymous_id, min(sessions.session_start) as first_start
    from {{ stored }} as sessions
    inner join identified on identified.anonymous_id = sessions.anonymous_id
    group by sessions.anonymous_id
    {%- else -%}
    select null::text as anonymous_id, null::timestamptz as first_start
    where false
    {%- endif %}

),

plan as (

    select
        window_events.anonymous_id,
        case
            when identified.anonymous_id is not null
                then least(window_events.first_at, first_sessions.first_start)
            else least(window_events.first_at, touched_sessions.first_start)
        end as recompute_from,
        case
            when identified.anonymous_id is not null then 'infinity'::timestamptz
            else greatest(window_events.last_at, touched_sessions.last_end)
        end as recompute_until,
        identified.anonymous_id is not null as identity_changed

    from window_events
    left join touched_sessions on touched_sessions.anonymous_id = window_events.anonymous_id
    left join identified on identified.anonymous_id = window_events.anonymous_id
    left join first_sessions on first_sessions.anonymous_id = window_events.anonymous_id

)

select * from plan
