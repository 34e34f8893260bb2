{{
    config(
        materialized='distributed_table',
    )
}}
-- depends_on: {{ ref('int_retention_plan') }}
-- The activity cells a windowed run of fct_retention_activity is about to replace, as the
-- previous run left them (those of its plan's devices from their recompute_from on: what the
-- forget step deletes), read before they are: int_retention_changed_cohorts finds in them the
-- cohorts the replacement changes, such as the old cohort of a first-time unit that moved.
-- Read by the facts' (anonymous_id, period_started_at) index, so it costs what the plan costs.
-- Empty without a window and on the first run.
{%- set previous = retention_previous_relation('fct_retention_activity') %}

{% if previous is none or retro_window() is none -%}
select
    null::text as retention_name,
    null::text as anonymous_id,
    null::text as unit_id,
    null::bigint as period_index,
    null::timestamptz as first_start_at,
    null::uuid as first_start_event_id
where false
{%- else -%}
select
    facts.retention_name,
    facts.anonymous_id,
    facts.unit_id,
    facts.period_index,
    facts.first_start_at,
    facts.first_start_event_id

from {{ ref('int_retention_plan') }} as planned
inner join {{ previous }} as facts
    on facts.anonymous_id = planned.anonymous_id
    and facts.period_started_at >= planned.recompute_from
    and facts.period_started_at <= planned.recompute_until
{%- endif %}
