{{ config(materialized='view') }}
-- Funnel numbers over any range of days: one row per attempt (not excluded) and step it
-- reached, with its unit, entry time and breakdown group. A BI tool counts distinct unit_id
-- over the days it needs, by step_number, and gets each unit once however many days it entered
-- on; for a day, week or month that is the mart's `units` of the period's rows.
select
    facts.funnel_name,
    facts.unit,
    facts.entered_at,
    facts.entry_day,
    {{ funnel_breakdown_group('facts', 'funnels') }} as breakdown_value,
    facts.unit_id,
    reached.step_number::integer as step_number,
    facts.outcome = 'in_progress' as in_progress
from {{ ref('fct_funnel_entries') }} as facts
inner join {{ ref('stg_funnels') }} as funnels on funnels.funnel_name = facts.funnel_name
-- Steps 1 to furthest_step, numbered off the attempt's own step times. Not generate_series(1,
-- furthest_step): the planner guesses 1000 rows for it, and the inflated cost made PostgreSQL
-- JIT-compile a 30-day read (680 ms of its 780; 45 ms this way, benchmarks/RESULTS.md section 5).
cross join lateral unnest(facts.step_reached_at[1:facts.furthest_step])
    with ordinality as reached (reached_at, step_number)
where facts.outcome <> 'excluded'
