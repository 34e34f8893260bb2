{{
    config(
        materialized='distributed_table',
        reference=true,
        pre_hook=['set local enable_mergejoin = off', 'set local enable_hashjoin = off'],
    )
}}
-- The attempts a windowed run changed in the funnel facts, by unit and entry day: each planned
-- (funnel, unit) from the plan's first_attempt on, with the entry days of the attempts the plan
-- replaced and of those written in their place (numbered from first_attempt on: the kept
-- attempts ended before the point and come first). mart_funnel_unit_steps replaces exactly these
-- attempts; int_funnel_changed_days lists their days for the conversion mart. Funnels whose
-- version changed are not listed: the marts recompute all of their days.
-- A table, filled once per run: the marts read it several times (deletes, ranges, periods), and
-- as a view each read would join the plan with the facts again. Merge and hash joins off
-- (pre_hook; on Citus the workers plan their shards' joins themselves): each planned unit's
-- attempts are read by the facts' primary key. The planner's choice was a merge join over every
-- stored attempt, which grew with history (0.5 to 0.7 s a read at 90 days; benchmarks/RESULTS.md
-- section 4c).
with

plan as (

    select * from {{ ref('int_funnel_recompute_plan') }}

),

replaced as (

    select plan.funnel_name, plan.unit_id, plan.first_attempt, replaced_days.entry_day
    from plan
    cross join lateral unnest(plan.replaced_entry_days) as replaced_days (entry_day)

),

written as (

    select plan.funnel_name, plan.unit_id, plan.first_attempt, facts.entry_day
    from plan
    inner join {{ ref('fct_funnel_entries') }} as facts
        on facts.funnel_name = plan.funnel_name
        and facts.unit_id = plan.unit_id
        and facts.attempt_number >= plan.first_attempt

),

final as (

    select funnel_name, unit_id, first_attempt, entry_day from replaced
    union
    select funnel_name, unit_id, first_attempt, entry_day from written

)

select * from final
