{{
    config(
        materialized='distributed_table',
        indexes=[{'columns': ['anonymous_id'], 'unique': true}],
    )
}}
-- What a windowed run of fct_retention_activity recomputes: one row per device, and the time
-- from which its activity cells (one per retention, person, period and breakdown value) are
-- derived again: the earliest period start, over the retentions, of the device's stream rows
-- in the window [start - lookback_hours, end). A cell holds only the events of its own period,
-- so every cell from that period start on is rebuilt whole from the device's stream, and a late
-- event changes exactly the cells of its period. A unit's first-time cohort is read from all
-- its cells by the mart, so a late start event older than the unit's first one moves it.
--
-- A device whose identity periods the window changes (its first identify, or another user
-- than its last identify before the window: int_sessions_plan's `identity_changed`) is redone
-- whole (recompute_from = -infinity): its events may belong to another person now.
--
-- A session breakdown reads the start event's session: the devices whose sessions this run
-- re-derives (int_sessions_plan) are rebuilt from the period of the first re-derived session.
-- A person breakdown reads the trait as of the event: an identify in the window may start a
-- new version of a trait from its time on, so every device of that person is rebuilt from the
-- period of that identify. Both only when an analysis has such a breakdown.
--
-- Empty without a window: such a run rebuilds every cell.
{%- set window = retro_window() %}
{%- set needs = retention_breakdown_needs() %}
-- depends_on: {{ ref('int_device_persons') }}
-- depends_on: {{ ref('int_identify_events') }}

with

retentions as (

    select * from {{ ref('stg_retentions') }}

),

window_rows as (

    select
        stream.anonymous_id,
        min(
            ({{ retention_period_start('stream.occurred_at', 'retentions') }})
                at time zone retentions.time_zone
        ) as first_period_start

    from {{ ref('int_retention_events') }} as stream
    inner join retentions on retentions.retention_name = stream.retention_name
    where {{ retro_in_window('stream.occurred_at') }}
        and {{ 'true' if window is not none else 'false' }}
    group by stream.anonymous_id

),

-- The devices whose identity periods the window changes: int_sessions_plan's rule, read there.
identified as (

    select anonymous_id
    from {{ ref('int_sessions_plan') }}
    where identity_changed and {{ 'true' if window is not none else 'false' }}

),

-- The earliest period start, over the retentions with such a breakdown, of a moment.
resessioned as (

    {% if needs.session and window is not none -%}
    select
        planned.anonymous_id,
        min(
            ({{ retention_period_start('planned.recompute_from', 'retentions') }})
                at time zone retentions.time_zone
        ) as first_period_start

    from {{ ref('int_sessions_plan') }} as planned
    inner join retentions on retentions.breakdown_session is not null
    group by planned.anonymous_id
    {%- else -%}
    select null::text as anonymous_id, null::timestamptz as first_period_start
    where false
    {%- endif %}

),

retraited as (

    {% if needs.person and window is not none -%}
    select
        devices.anonymous_id,
        min(
            ({{ retention_period_start('identifies.occurred_at', 'retentions') }})
                at time zone retentions.time_zone
        ) as first_period_start

    from {{ ref('int_identify_events') }} as identifies
    inner join {{ ref('int_device_persons') }} as devices
        on devices.person_id = 'user:' || identifies.user_id
    inner join retentions on retentions.breakdown_person is not null
    where {{ retro_in_window('identifies.occurred_at') }}
    group by devices.anonymous_id
    {%- else -%}
    select null::text as anonymous_id, null::timestamptz as first_period_start
    where false
    {%- endif %}

),

reasons as (

    select anonymous_id, first_period_start from window_rows
    union all
    select anonymous_id, first_period_start from resessioned
    union all
    select anonymous_id, first_period_start from retraited
    union all
    select anonymous_id, '-infinity'::timestamptz from identified

),

plan as (

    select
        reasons.anonymous_id,
        min(reasons.first_period_start) as recompute_from,
        'infinity'::timestamptz as recompute_until,
        bool_or(identified.anonymous_id is not null) as identity_changed

    from reasons
    left join identified on identified.anonymous_id = reasons.anonymous_id
    group by reasons.anonymous_id

)

select * from plan
