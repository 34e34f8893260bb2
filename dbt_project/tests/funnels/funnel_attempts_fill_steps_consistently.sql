-- Every attempt filled exactly furthest_step steps, within its windows; ordered and strict
-- funnels fill steps 1..furthest_step in time order; converted attempts filled them all.
with

attempts as (

    select
        facts.*,
        funnels.order_mode,
        funnels.step_count,
        funnels.conversion_window,
        (select count(*) from unnest(facts.step_reached_at) as reached (at) where at is not null)
            as filled,
        (select max(at) from unnest(facts.step_reached_at) as reached (at)) as last_at

    from {{ ref('fct_funnel_entries') }} as facts
    inner join {{ ref('stg_funnels') }} as funnels on funnels.funnel_name = facts.funnel_name

)

select funnel_name, unit_id, attempt_number
from attempts
where filled <> furthest_step
    or cardinality(step_reached_at) <> step_count
    or converted <> (furthest_step = step_count)
    or last_at > (entered_at at time zone 'UTC' + conversion_window) at time zone 'UTC'
    or last_at > deadline_at
    or step_reached_at[entry_step] <> entered_at
    or (
        order_mode <> 'unordered'
        and exists (
            select 1
            from generate_series(2, step_count) as step
            where step <= furthest_step
                and (step_reached_at[step] is null or step_reached_at[step] < step_reached_at[step - 1])
        )
    )
