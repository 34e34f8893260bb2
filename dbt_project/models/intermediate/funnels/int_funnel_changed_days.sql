{{
    config(
        materialized='distributed_table',
        reference=true,
        pre_hook=['set local enable_mergejoin = off', 'set local enable_hashjoin = off'],
    )
}}
-- The (funnel, entry day) pairs a windowed run changed in the funnel facts, for the mart to
-- recompute: the entry days of the attempts the plan replaced, and of those it wrote in their
-- place (the planned units' attempts that ended at or after their point). Both are read through
-- the plan, so finding them costs what the plan costs, not a scan of the facts. Funnels whose
-- version changed are not listed: the mart recomputes all of their days.
-- A table, filled once per run: the two marts read it five times (the conversion mart's delete,
-- ranges and period filter, the unit-steps mart's delete and ranges), and as a view each read
-- joined the plan with the facts again. Merge and hash joins off (pre_hook; on Citus the
-- workers plan their shards' joins themselves): each planned unit's attempts are read by the
-- facts' primary key. The planner's choice was a merge join over every stored attempt, which
-- grew with history (0.5 to 0.7 s a read at 90 days; benchmarks/RESULTS.md section 4c).
with

plan as (

    select * from {{ ref('int_funnel_recompute_plan') }}

),

replaced as (

    select plan.funnel_name, replaced_days.entry_day
    from plan
    cross join lateral unnest(plan.replaced_entry_days) as replaced_days (entry_day)

),

written as (

    select facts.funnel_name, facts.entry_day
    from plan
    inner join {{ ref('fct_funnel_entries') }} as facts
        on {{ funnel_replaced_by_plan('facts', 'plan') }}

),

final as (

    select funnel_name, entry_day from replaced
    union
    select funnel_name, entry_day from written

)

select * from final
