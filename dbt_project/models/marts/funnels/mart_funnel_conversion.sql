{{ config(materialized='funnel_mart') }}
-- depends_on: {{ ref('int_funnel_versions') }}
-- depends_on: {{ ref('int_funnel_changed_days') }}
-- Per funnel, period (the entry's day, ISO week and month) and breakdown value, one row per step:
-- units, attempts, conversion and timing, ready for BI tools (filter by funnel_name and period).
-- Semantics: the model's description and retrolytics/semantics/funnels.py. A windowed run
-- recomputes only the periods holding a (funnel, day) whose facts changed
-- (int_funnel_changed_days) and the funnels whose version changed.
{%- set incremental = funnel_mart_incremental() %}

with

funnels as (

    select funnel_name, unit, step_count, breakdown_field, breakdown_property, breakdown_session,
        breakdown_person, attribution, attribution_step, attribution_unreached, order_mode
    from {{ ref('stg_funnels') }}

),

steps as (

    select funnel_name, position as step_number, label
    from {{ ref('stg_funnel_steps') }}
    where role = 'step'

),

{% if incremental %}
-- Funnels whose rows here are of another version (edited, new): all their days.
rebuilt_funnels as (

    {{ funnel_mart_rebuilt_funnels() }}

),

-- Per funnel, one range of entry times covering every period this run recomputes: the days,
-- weeks and months holding a changed day. An hourly run's range is the current month and week;
-- changed days far apart (a late event) widen it, which costs reading more facts, never
-- a wrong row (facts outside the recomputed periods are filtered out below).
recomputed_ranges as (

    select
        changed.funnel_name,
        min(changed.period_start)::timestamp at time zone 'UTC' as entered_from,
        max(changed.period_start + ('1 ' || changed.period)::interval)::timestamp
            at time zone 'UTC' as entered_until
    from ({{ funnel_mart_recomputed_periods() }}) as changed
    where changed.funnel_name not in (select funnel_name from rebuilt_funnels)
    group by changed.funnel_name

),
{% endif %}

-- The facts of those ranges and funnels (all of them in a full build): a windowed run costs the
-- periods that changed, not the history.
recomputed_facts as (

    {{ funnel_mart_facts_of('recomputed_ranges', 'rebuilt_funnels') }}

),

-- The attempts counted (all but excluded ones), each with its breakdown group.
attempts as (

    select
        facts.funnel_name,
        facts.content_hash,
        facts.unit_id,
        facts.attempt_number,
        facts.entered_at,
        facts.entry_day,
        facts.step_reached_at,
        facts.outcome = 'in_progress' as in_progress,
        {{ funnel_breakdown_group('facts', 'funnels') }} as breakdown_group

    from recomputed_facts as facts
    inner join funnels on funnels.funnel_name = facts.funnel_name
    where facts.outcome <> 'excluded'

),

-- The k-th step an attempt filled, and when (for ordered funnels the k-th step is step k):
-- seconds since entry, and since the (k-1)-th step (null at k = 1). Once per attempt, before
-- it is counted in its periods and groups. Every attempt filled its entry step (k = 1).
-- Materialized: on Citus the windows and percentiles below then run over an intermediate
-- result, not over the distributed facts.
filled as materialized (

    select
        attempts.funnel_name,
        attempts.content_hash,
        attempts.unit_id,
        attempts.attempt_number,
        attempts.entered_at,
        attempts.entry_day,
        attempts.in_progress,
        attempts.breakdown_group,
        filled.step_number,
        extract(epoch from filled.reached_at - attempts.entered_at)::float8 as seconds,
        extract(epoch from filled.since_previous)::float8 as seconds_from_previous

    from attempts
    cross join lateral (
        select
            row_number() over (order by reached.at, reached.step) as step_number,
            reached.at as reached_at,
            reached.at - lag(reached.at) over (order by reached.at, reached.step)
                as since_previous
        from unnest(attempts.step_reached_at) with ordinality as reached (at, step)
        where reached.at is not null
    ) as filled

),

-- Each filled step in the overall group `(all)` and in that of its breakdown value
-- (funnel_breakdown_group), with the entry day of the unit's previous attempt there that filled
-- the step too, and of its previous one alike (both settled, or both in progress): an attempt
-- is its unit's first in a period when that day lies in an earlier period. A lag over one sort
-- of these rows, before they are repeated per period, not a ranking over each period's copy.
-- Partitioned by unit first: a sort led by the columns of few values compares them all for
-- every pair of rows. At 3M events this mart took 5.4 s, against 9.8 s with a ranking of
-- each period's copy (benchmarks/RESULTS.md section 4).
grouped as (

    select
        filled.*,
        grouped.breakdown_value,
        lag(filled.entry_day) over unit_steps as previous_entry_day,
        lag(filled.entry_day) over unit_steps_alike as previous_alike_entry_day

    from filled
    cross join lateral (
        select breakdown_value
        from unnest(array['(all)', filled.breakdown_group]) as values_counted (breakdown_value)
        where breakdown_value is not null
    ) as grouped
    window
        unit_steps as (
            partition by filled.unit_id, filled.funnel_name, grouped.breakdown_value,
                filled.step_number
            order by filled.entered_at, filled.attempt_number
        ),
        unit_steps_alike as (
            partition by filled.unit_id, filled.funnel_name, grouped.breakdown_value,
                filled.step_number, filled.in_progress
            order by filled.entered_at, filled.attempt_number
        )

),

-- Each grouped step in its attempt's day, ISO week and month (only the periods this run
-- recomputes), and whether the attempt is its unit's first there that got this far (the units
-- and timing figures count only those) and its first alike (for the settled units, which the
-- conversion rates count, and the units in progress).
progress as (

    select
        grouped.funnel_name,
        grouped.content_hash,
        periods.period,
        periods.period_start,
        grouped.breakdown_value,
        grouped.step_number,
        grouped.in_progress,
        grouped.seconds,
        grouped.seconds_from_previous,
        {{ funnel_period_start('periods.period', 'grouped.previous_entry_day') }}
            is distinct from periods.period_start as first_of_unit,
        {{ funnel_period_start('periods.period', 'grouped.previous_alike_entry_day') }}
            is distinct from periods.period_start as first_alike

    from grouped
    cross join lateral (
        select period, {{ funnel_period_start('period', 'grouped.entry_day') }} as period_start
        from unnest({{ funnel_periods() }}) as period
    ) as periods
    {%- if incremental %}
    where grouped.funnel_name in (select funnel_name from rebuilt_funnels)
        or (grouped.funnel_name, periods.period, periods.period_start)
            in ({{ funnel_mart_recomputed_periods() }})
    {%- endif %}

),

-- Per step: units (their first attempts) and their timing; attempts; and the units whose
-- attempts are settled or in progress.
per_step as (

    select
        funnel_name,
        period,
        period_start,
        breakdown_value,
        step_number,
        min(content_hash) as content_hash,
        count(*) filter (where first_of_unit) as units,
        avg(seconds) filter (where first_of_unit) as avg_seconds_to_step,
        percentile_cont(0.5) within group (order by seconds) filter (where first_of_unit)
            as median_seconds_to_step,
        percentile_cont(0.9) within group (order by seconds) filter (where first_of_unit)
            as p90_seconds_to_step,
        avg(seconds_from_previous) filter (where first_of_unit) as avg_seconds_from_previous,
        percentile_cont(0.5) within group (order by seconds_from_previous)
            filter (where first_of_unit) as median_seconds_from_previous,
        percentile_cont(0.9) within group (order by seconds_from_previous)
            filter (where first_of_unit) as p90_seconds_from_previous,
        count(*) as entries,
        count(*) filter (where first_alike and not in_progress) as settled_units,
        count(*) filter (where first_alike and in_progress) as units_in_progress

    from progress
    group by funnel_name, period, period_start, breakdown_value, step_number

),

-- The (period, breakdown value) groups with an attempt: every attempt filled its first step.
groups as (

    select funnel_name, content_hash, period, period_start, breakdown_value
    from per_step
    where step_number = 1

),

grid as (

    select
        groups.funnel_name,
        groups.content_hash,
        funnels.unit,
        groups.period,
        groups.period_start,
        case
            when funnels.breakdown_field is not null then funnels.breakdown_field
            when funnels.breakdown_property is not null
                then 'property ' || funnels.breakdown_property
            when funnels.breakdown_session is not null
                then 'session ' || funnels.breakdown_session
            when funnels.breakdown_person is not null
                then 'person ' || funnels.breakdown_person
            else '(none)'
        end as breakdown_by,
        funnels.attribution,
        groups.breakdown_value,
        steps.step_number,
        case
            when funnels.order_mode = 'unordered'
                then steps.step_number || ' of ' || funnels.step_count || ' steps'
            else steps.label
        end as step_name,
        funnels.step_count,
        coalesce(per_step.units, 0) as units,
        coalesce(per_step.entries, 0) as entries,
        coalesce(per_step.settled_units, 0) as settled_units,
        coalesce(per_step.units_in_progress, 0) as units_in_progress,
        per_step.avg_seconds_to_step,
        per_step.median_seconds_to_step,
        per_step.p90_seconds_to_step,
        per_step.avg_seconds_from_previous,
        per_step.median_seconds_from_previous,
        per_step.p90_seconds_from_previous

    from groups
    inner join funnels on funnels.funnel_name = groups.funnel_name
    inner join steps on steps.funnel_name = groups.funnel_name
    left join per_step
        on per_step.funnel_name = groups.funnel_name
        and per_step.period = groups.period
        and per_step.period_start = groups.period_start
        and per_step.breakdown_value = groups.breakdown_value
        and per_step.step_number = steps.step_number

),

final as (

    select
        funnel_name,
        unit,
        period,
        period_start,
        breakdown_by,
        attribution,
        breakdown_value,
        step_number::integer as step_number,
        step_name,
        step_count,
        units::integer as units,
        entries::integer as entries,
        units_in_progress::integer as units_in_progress,
        settled_units::float8 / nullif(lag(settled_units) over funnel_group, 0)
            as conversion_from_previous,
        settled_units::float8 / nullif(first_value(settled_units) over funnel_group, 0)
            as conversion_overall,
        avg_seconds_to_step,
        median_seconds_to_step,
        p90_seconds_to_step,
        avg_seconds_from_previous,
        median_seconds_from_previous,
        p90_seconds_from_previous,
        max(avg_seconds_to_step) filter (where step_number = step_count)
            over whole_group as avg_seconds_to_convert,
        max(median_seconds_to_step) filter (where step_number = step_count)
            over whole_group as median_seconds_to_convert,
        max(p90_seconds_to_step) filter (where step_number = step_count)
            over whole_group as p90_seconds_to_convert,
        content_hash,
        now() as derived_at,
        '{{ invocation_id }}'::text as invocation_id

    from grid
    window
        funnel_group as (
            partition by funnel_name, period, period_start, breakdown_value
            order by step_number
        ),
        whole_group as (partition by funnel_name, period, period_start, breakdown_value)

)

select * from final
