{{
    config(
        materialized='unit_facts',
        versions_model='int_funnel_versions',
        version_column='funnel_name',
        plan_model='int_funnel_recompute_plan',
        replaced_from='ended_at',
        indexes=[{'columns': ['funnel_name', 'entered_at']}, {'columns': ['outcome', 'ended_at']}],
        post_hook=after_commit('{{ analyze_when_grown() }}'),
    )
}}
-- depends_on: {{ ref('int_funnel_versions') }}
-- depends_on: {{ ref('int_funnel_recompute_plan') }}
-- depends_on: {{ ref('fct_sessions') }}
-- depends_on: {{ ref('int_device_persons') }}
-- depends_on: {{ ref('dim_person_traits') }}
-- The attempts at `unit: device` funnels: one row per device per attempt. The unit is the
-- anonymous_id column itself, so on Citus each device's walk runs on the shard of its events
-- (the whole INSERT ... SELECT is pushed down: every CTE inlined, no correlated subquery).
-- Semantics: retrolytics/semantics/funnels.py; the walk: funnel_walk() (macros/funnels/funnel_walk.sql).
{%- set planned = unit_facts_planned() %}
{%- set needs = funnel_stream_needs('device') %}
{%- set in_context = needs.session or needs.person %}

with

-- The funnels of this unit, and whether this run derives them over all history (a new or edited
-- version: not in the table's ledger).
funnels as not materialized (

    select funnels.*, not {{ retro_is_derived() }} as rebuilt
    from {{ ref('int_funnels') }} as funnels
    {{ retro_ledger_join('funnels.funnel_name', 'funnels.content_hash') }}
    where funnels.unit = 'device'

),

-- The step events, each with its breakdown value in context: a session or person breakdown
-- reads the event's session or its person's traits (joined only when a funnel needs them).
step_events as not materialized (

    select
        step_events.*,
        step_events.anonymous_id as unit_id,
        {{ funnel_context_breakdown('step_events', 'context_funnels', needs.session, needs.person) }}
            as context_breakdown

    from {{ ref('int_funnel_step_events') }} as step_events
    {% if in_context -%}
    inner join {{ ref('int_funnels') }} as context_funnels
        on context_funnels.funnel_name = step_events.funnel_name
    {{ funnel_context_joins('step_events', 'context_funnels', needs.session, needs.person) }}
    {%- endif %}
    where step_events.unit = 'device'

),

{% if planned %}
-- A windowed run: new and edited funnels over all history, and the planned units of the others
-- from their resume points on.
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
        and step_events.occurred_at >= {{ funnel_plan_lower_bound() }}

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
