{{
    config(
        materialized='funnel_mart',
        replaced_grain='attempt',
        indexes=[{'columns': ['funnel_name', 'entry_day', 'step_number', 'unit_id']}],
        pre_hook=[
            "set local enable_hashjoin = {{ 'off' if funnel_mart_incremental() else 'on' }}",
            "set local enable_mergejoin = {{ 'off' if funnel_mart_incremental() else 'on' }}",
        ],
        post_hook=after_commit('vacuum (analyze) {{ this }}'),
    )
}}
-- depends_on: {{ ref('int_funnel_versions') }}
-- depends_on: {{ ref('int_funnel_changed_attempts') }}
-- Funnel numbers over any range of days: one row per attempt (not excluded) and step it
-- reached, with its unit, entry time and breakdown group. A BI tool counts distinct unit_id
-- over the days it needs, by step_number, and gets each unit once however many days it entered
-- on; for a day, week or month that is the mart's `units` of the period's rows.
--
-- A table, not a view over the facts: a 30-day count then reads its index alone (the vacuum
-- after each run marks the pages all-visible, so it never visits the rows), instead of every
-- attempt's wide row and its steps unnested per query (benchmarks/RESULTS.md section 5). A
-- windowed run recomputes the attempts whose facts changed (int_funnel_changed_attempts) and
-- the funnels whose version changed. It reads and deletes their rows by index, a nested loop
-- each (pre_hook): the planner would otherwise hash the few changed attempts and scan every
-- row, which grows with history.
{%- set incremental = funnel_mart_incremental() %}

with

funnels as (

    select funnel_name, breakdown_field, breakdown_property, breakdown_session,
        breakdown_person, attribution_step, attribution_unreached
    from {{ ref('stg_funnels') }}

),

{% if incremental %}
-- Funnels whose rows here are of another version (edited, new): all their days.
rebuilt_funnels as (

    {{ funnel_mart_rebuilt_funnels() }}

),

-- The attempts whose facts changed (int_funnel_changed_attempts), but those of the funnels
-- rebuilt: a row here depends on its attempt's fact alone, so a windowed run replaces the
-- attempts that changed, not their whole days.
changed_attempts as (

    select *
    from {{ ref('int_funnel_changed_attempts') }}
    where funnel_name not in (select funnel_name from rebuilt_funnels)

),
{% endif %}

-- Their facts, read by the facts' primary key, and every fact of the funnels rebuilt (all of
-- them in a full build).
recomputed_facts as (

    {{ funnel_mart_facts_of('changed_attempts', 'rebuilt_funnels') }}

),

final as (

    select
        facts.funnel_name,
        facts.content_hash,
        facts.unit,
        facts.unit_id,
        facts.attempt_number,
        facts.entered_at,
        facts.entry_day,
        {{ funnel_breakdown_group('facts', 'funnels') }} as breakdown_value,
        reached.step_number::integer as step_number,
        facts.outcome = 'in_progress' as in_progress

    from recomputed_facts as facts
    inner join funnels on funnels.funnel_name = facts.funnel_name
    -- Steps 1 to furthest_step, numbered off the attempt's own step times. Not
    -- generate_series(1, furthest_step): the planner guesses 1000 rows for it, and the inflated
    -- cost made PostgreSQL JIT-compile the statement (benchmarks/RESULTS.md section 5).
    cross join lateral unnest(facts.step_reached_at[1:facts.furthest_step])
        with ordinality as reached (reached_at, step_number)
    where facts.outcome <> 'excluded'

)

-- In (funnel, day) order, so a range of days of one funnel lies in few pages.
select * from final
order by funnel_name, entry_day, step_number
