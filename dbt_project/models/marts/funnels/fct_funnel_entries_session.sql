{{
    config(
        materialized='unit_facts',
        versions_model='int_funnel_versions',
        version_column='funnel_name',
        plan_model='int_funnel_recompute_plan',
        replaced_from='ended_at',
        indexes=[{'columns': ['funnel_name', 'entered_at']}, {'columns': ['outcome', 'ended_at']}, {'columns': ['anonymous_id', 'entered_at']}],
        post_hook=after_commit('{{ analyze_when_grown() }}'),
    )
}}
-- depends_on: {{ ref('int_funnel_versions') }}
-- depends_on: {{ ref('int_funnel_recompute_plan') }}
-- depends_on: {{ ref('fct_sessions') }}
-- depends_on: {{ ref('int_device_persons') }}
-- depends_on: {{ ref('dim_person_traits') }}
-- The attempts at `unit: session` funnels: one row per session per attempt. The unit is the
-- session of fct_sessions each step event lies in (same device, between the session's start
-- and end; unit_id `session:<first_event_id>`), so an attempt never leaves its session. A
-- session is cut by every event of the device, not only the step events: the unit comes from
-- the sessions, never from the step events' own gaps.
-- Semantics: retrolytics/semantics/funnels.py; the walk: funnel_walk() (macros/funnels/funnel_walk.sql).
{%- set planned = unit_facts_planned() %}
{%- set needs = funnel_stream_needs('session') %}

with

-- The funnels of this unit, and whether this run derives them over all history (a new or edited
-- version: not in the table's ledger).
funnels as not materialized (

    select funnels.*, not {{ retro_is_derived() }} as rebuilt
    from {{ ref('int_funnels') }} as funnels
    {{ retro_ledger_join('funnels.funnel_name', 'funnels.content_hash') }}
    where funnels.unit = 'session'

),

-- The step events with their session (the unit) and their breakdown value in context.
step_events as not materialized (

    select
        step_events.*,
        'session:' || sessions.first_event_id as unit_id,
        {{ funnel_context_breakdown('step_events', 'context_funnels', true, needs.person) }}
            as context_breakdown

    from {{ ref('int_funnel_step_events') }} as step_events
    inner join {{ ref('int_funnels') }} as context_funnels
        on context_funnels.funnel_name = step_events.funnel_name
    {{ funnel_context_joins('step_events', 'context_funnels', true, needs.person) }}
    where step_events.unit = 'session'

),

{% if planned %}
-- A windowed run: new and edited funnels over all history, and the planned sessions of the
-- others, whole (read by device: an index on the step events).
in_scope as (

    select step_events.*
    from step_events
    inner join funnels on funnels.funnel_name = step_events.funnel_name
    where funnels.rebuilt and exists (select 1 from funnels where rebuilt)

    union all

    select step_events.*
    from step_events
    inner join funnels
        on funnels.funnel_name = step_events.funnel_name
        and not funnels.rebuilt
    inner join {{ ref('int_funnel_recompute_plan') }} as plan
        on plan.funnel_name = step_events.funnel_name
        and plan.unit_id = step_events.unit_id
    where {{ funnel_stream_key('step_events') }} >= {{ funnel_resume_key('plan') }}
        and (step_events.funnel_name, step_events.anonymous_id) in (
            select plan.funnel_name, plan.device
            from {{ ref('int_funnel_recompute_plan') }} as plan
            where plan.unit = 'session'
        )

),
{% else %}
in_scope as (

    select step_events.*
    from step_events
    inner join funnels on funnels.funnel_name = step_events.funnel_name

),
{% endif %}

-- Then each unit's stream, the walk over it and the attempt columns: the same for every unit
-- (funnel_walk_ctes in macros/funnels/funnel_fragments.sql; `dbt compile` shows them).
{{ funnel_walk_ctes(user_id='attempts.entry_user_id', holds=needs.hold) }}

select * from final
