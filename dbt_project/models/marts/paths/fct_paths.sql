{{
    config(
        materialized='unit_facts',
        versions_model='int_path_versions',
        version_column='path_name',
        plan_model='int_paths_plan',
        replaced_from='segment_start',
        indexes=[{'columns': ['path_name', 'unit_id', 'segment_start']}],
        pre_hook='set local enable_nestloop = off',
    )
}}
-- No nested loops (this transaction only): after autovacuum's ANALYZE, the estimates of this
-- model's chained CTEs compound to a few rows where an hourly run has thousands, and the
-- nested loops chosen for them ran a settled warehouse's hourly run for 13 s instead of 2
-- (benchmarks/RESULTS.md, 4c). The per-device LATERAL reads, the only way to run them, stay.
-- depends_on: {{ ref('int_path_versions') }}
-- depends_on: {{ ref('int_paths_plan') }}
-- One row per path analysis, unit and segment: the unit's stream (int_path_events) cut where a
-- gap passes without a step (or by session), and, when the segment holds the anchor, its path:
-- the ordered steps and their times. The rules in words, and the Python reference the tests
-- compare with: retrolytics/semantics/paths.py.
--
-- A windowed run derives each planned unit (int_paths_plan) from its point on (a segment
-- boundary); a first run, a run without a window, or a new or edited path derives all history.
{%- set window = retro_window() %}

with

paths as not materialized (

    select
        paths.path_name,
        versions.content_hash,
        paths.anchor_at,
        paths.anchor_label,
        paths.step_limit,
        paths.gap,
        paths.gap_session,
        paths.collapse_repeats,
        paths.unit,
        {{ retro_is_derived() }} as derived

    from {{ ref('stg_paths') }} as paths
    inner join {{ ref('int_path_versions') }} as versions
        on versions.path_name = paths.path_name
    {{ retro_ledger_join('versions.path_name', 'versions.content_hash') }}

),

persons as not materialized (

    select anonymous_id, person_id, valid_from, valid_until from {{ ref('int_device_persons') }}

),

{% if window is not none %}
plan as not materialized (

    select plan.path_name, plan.unit_id, plan.recompute_from, plan.identity_changed, paths.unit
    from {{ ref('int_paths_plan') }} as plan
    inner join paths on paths.path_name = plan.path_name
    where paths.derived

),

-- The devices whose events a planned unit may hold, from the unit's point on; `by_device`
-- when a unit of theirs is planned for a moved identity (its point may lie days back).
planned_devices as (

    select path_name, anonymous_id, min(from_at) as from_at, bool_or(identity_changed) as by_device
    from (
        select path_name, unit_id as anonymous_id, recompute_from as from_at, identity_changed
        from plan where unit = 'device'
        union all
        select path_name, substr(unit_id, length('device:') + 1), recompute_from, identity_changed
        from plan where unit = 'user' and unit_id like 'device:%'
        union all
        select plan.path_name, persons.anonymous_id, plan.recompute_from, plan.identity_changed
        from plan
        inner join persons on persons.person_id = plan.unit_id
        where plan.unit = 'user'
    ) as devices
    group by path_name, anonymous_id

),

events as (

    -- The earliest finite point of the plan (written earlier in this run) is a constant in the
    -- SQL: it reaches the defined_events and stg_events scans through the stream's grouping, so
    -- older partitions are never read. A join condition would not: PostgreSQL does not push it
    -- into a grouped view, and would label all history first.
    select events.*
    from {{ ref('int_path_events') }} as events
    inner join planned_devices as planned
        on planned.path_name = events.path_name
        and planned.anonymous_id = events.anonymous_id
        and events.occurred_at >= planned.from_at
    where not planned.by_device
        and events.occurred_at >= {{ paths_plan_lower_bound() }}

    union all

    -- Devices of units planned for a moved identity, whose points may lie days back: each
    -- device's stream from its point, read by index (defined_events and raw.events by
    -- anonymous_id, only the daily partitions from the point on; the LATERAL's conditions reach
    -- them through the stream's grouping), never a labelling of all history from the earliest
    -- point, which the join above would do (measured at 10 days: 5.7 s of the run's 7.8 s,
    -- growing with history). OFFSET 0 keeps PostgreSQL from flattening the LATERAL into that
    -- join, as in fct_sessions.
    select events.*
    from planned_devices as planned
    cross join lateral (
        select device_events.*
        from {{ ref('int_path_events') }} as device_events
        where device_events.path_name = planned.path_name
            and device_events.anonymous_id = planned.anonymous_id
            and device_events.occurred_at >= planned.from_at
        offset 0
    ) as events
    where planned.by_device

    union all

    -- New or edited paths: all history.
    select events.*
    from {{ ref('int_path_events') }} as events
    inner join paths on paths.path_name = events.path_name
    where not paths.derived

),
{% else %}
events as (

    select * from {{ ref('int_path_events') }}

),
{% endif %}

-- Each event's unit, and for `gap: session` its session (fct_sessions, built earlier).
units as (

    select
        events.path_name,
        events.anonymous_id,
        events.event_id,
        events.occurred_at,
        events.label,
        case
            when paths.unit = 'device' then events.anonymous_id
            else coalesce(persons.person_id, 'device:' || events.anonymous_id)
        end as unit_id,
        sessions.anonymous_id as session_device,
        sessions.session_start

    from events
    inner join paths on paths.path_name = events.path_name
    left join persons
        on paths.unit = 'user'
        and persons.anonymous_id = events.anonymous_id
        and events.occurred_at >= persons.valid_from
        and events.occurred_at < persons.valid_until
    left join {{ ref('fct_sessions') }} as sessions
        on paths.gap_session
        and sessions.anonymous_id = events.anonymous_id
        and events.occurred_at >= sessions.session_start
        and events.occurred_at <= sessions.session_end

),

-- A windowed run keeps, of a derived path, only its planned units from their point on.
kept as (

    select units.*
    from units
    {% if window is not none -%}
    inner join paths on paths.path_name = units.path_name
    left join {{ ref('int_paths_plan') }} as plan
        on plan.path_name = units.path_name and plan.unit_id = units.unit_id
    where not paths.derived
        or (case when paths.gap_session then units.session_start else units.occurred_at end)
            >= plan.recompute_from
    {%- endif %}

),

gaps as (

    select
        kept.*,
        paths.gap_session,
        case
            when paths.gap_session then 0
            when lag(kept.occurred_at) over unit_stream is null then 1
            when kept.occurred_at - lag(kept.occurred_at) over unit_stream >= paths.gap then 1
            else 0
        end as starts_segment

    from kept
    inner join paths on paths.path_name = kept.path_name
    window unit_stream as (
        partition by kept.path_name, kept.unit_id
        order by kept.occurred_at, kept.event_id, kept.anonymous_id collate "C"
    )

),

-- Segments: a new one where the gap passes since the unit's previous step event; with
-- `gap: session` the session is the segment (segment_number stays 0).
segmented as (

    select
        gaps.*,
        sum(gaps.starts_segment) over (
            partition by gaps.path_name, gaps.unit_id
            order by gaps.occurred_at, gaps.event_id, gaps.anonymous_id collate "C"
            rows unbounded preceding
        ) as segment_number

    from gaps

),

-- Steps: with collapse_repeats an event repeating the previous event's label is no new step.
stepped as (

    select
        segmented.*,
        not paths.collapse_repeats
            or lag(segmented.label) over segment_stream is distinct from segmented.label
            as is_step

    from segmented
    inner join paths on paths.path_name = segmented.path_name
    window segment_stream as (
        partition by segmented.path_name, segmented.unit_id, segmented.segment_number,
            segmented.session_device, segmented.session_start
        order by segmented.occurred_at, segmented.event_id, segmented.anonymous_id collate "C"
    )

),

numbered as (

    select
        stepped.*,
        case when stepped.is_step then count(*) filter (where stepped.is_step) over (
            partition by stepped.path_name, stepped.unit_id, stepped.segment_number,
                stepped.session_device, stepped.session_start
            order by stepped.occurred_at, stepped.event_id, stepped.anonymous_id collate "C"
            rows unbounded preceding
        ) end as step_number

    from stepped

),

-- The anchor: the segment's first step with the anchor's label (one path per segment).
anchored as (

    select
        numbered.*,
        min(numbered.step_number) filter (where numbered.label = paths.anchor_label) over (
            partition by numbered.path_name, numbered.unit_id, numbered.segment_number,
                numbered.session_device, numbered.session_start
        ) as anchor_step,
        paths.anchor_at,
        paths.step_limit

    from numbered
    inner join paths on paths.path_name = numbered.path_name

),

placed as (

    select
        anchored.*,
        coalesce(case
            when anchored.anchor_at = 'start' then anchored.step_number
                between anchored.anchor_step and anchored.anchor_step + anchored.step_limit - 1
            else anchored.step_number
                between anchored.anchor_step - anchored.step_limit + 1 and anchored.anchor_step
        end, false) as in_path

    from anchored

),

segments as (

    select
        path_name,
        unit_id,
        case when gap_session then session_device
            else (array_agg(anonymous_id order by occurred_at, event_id, anonymous_id collate "C"))[1]
        end as anonymous_id,
        case when gap_session then session_start else min(occurred_at) end as segment_start,
        max(occurred_at) as segment_end,
        count(*)::integer as event_count,
        coalesce(array_agg(label order by step_number) filter (where in_path), '{}')::text[]
            as steps,
        coalesce(array_agg(occurred_at order by step_number) filter (where in_path), '{}')
            ::timestamptz[] as step_times

    from placed
    group by path_name, unit_id, segment_number, session_device, session_start, gap_session

),

final as (

    select
        segments.path_name,
        segments.unit_id,
        segments.anonymous_id,
        segments.segment_start,
        segments.segment_end,
        segments.event_count,
        cardinality(segments.steps) > 0 as has_path,
        cardinality(segments.steps)::integer as step_count,
        segments.steps,
        segments.step_times,
        paths.content_hash,
        now() as derived_at,
        '{{ invocation_id }}'::text as invocation_id

    from segments
    inner join paths on paths.path_name = segments.path_name

)

select * from final
