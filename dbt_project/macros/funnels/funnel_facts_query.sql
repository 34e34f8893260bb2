{#-
    funnel_facts_query(unit): the SELECT that computes fct_funnel_entries for the funnels of one
    unit ('device' or 'user'); the model is the device query, and the materialization inserts
    the user query after it (semantics: the model's description and tests/funnel_reference.py).

    Why one statement per unit: on Citus the facts are distributed on unit_id, colocated with
    raw.events. A device's unit_id is its anonymous_id (funnel_unit_events), so the device query
    runs whole on each shard: no rows leave the workers. A person's events sit on the shards of
    all its devices, so the user query must bring them together (Citus plans that through the
    coordinator); keeping it apart keeps the device funnels off that path.

    Pushdown-safe throughout: every CTE is referenced once (PostgreSQL then inlines it; a CTE
    referenced twice stays a CTE, which an INSERT ... SELECT cannot push down), so the funnels,
    their bounds and the plan are subqueries and tables repeated where needed, the ledger is a
    join, and nothing is a correlated subquery.

    In an incremental run the materialization first writes a plan (`<table>__plan`: which units
    to recompute, from which attempt on); the query then reads only those units' events from
    that point, plus every event of funnels whose version changed. The plan is distributed on
    unit_id like the facts and joined on it, so those joins stay on the shards too.
-#}
{% macro funnel_facts_query(unit) -%}
{%- set planned = funnel_facts_planned() -%}
{%- set plan = funnel_plan_relation(this) -%}
with

{% if planned %}
matches as (

    select step_events.*
    from {{ funnel_unit_events(unit) }} as step_events
    inner join {{ funnel_facts_funnels() }} as funnels
        on funnels.funnel_name = step_events.funnel_name
    where funnels.rebuilt

    union all

    select step_events.*
    from {{ funnel_unit_events(unit) }} as step_events
    inner join {{ plan }} as plan
        on plan.funnel_name = step_events.funnel_name
        and plan.unit_id = step_events.unit_id
        and step_events.occurred_at >= plan.from_at
    -- A bound known before the scan: older partitions and index ranges are skipped.
    where step_events.occurred_at >= {{ funnel_plan_lower_bound(unit, plan) }}

),
{% else %}
matches as (

    select * from {{ funnel_unit_events(unit) }} as step_events

),
{% endif %}

-- One row per funnel, unit and event: the steps (bit k-1 = step k) and exclusions it matches.
stream_events as (

    select
        funnel_name,
        unit_id,
        anonymous_id,
        event_id,
        occurred_at,
        coalesce(bit_or(1 << (position - 1)) filter (where role = 'step'), 0) as step_mask,
        coalesce(bit_or(1 << (position - 1)) filter (where role = 'exclusion'), 0)
            as exclusion_mask,
        {{ funnel_sort_step("min(position) filter (where role = 'step')") }} as sort_step

    from matches
    group by funnel_name, unit_id, anonymous_id, event_id, occurred_at

),

in_scope as (

    select stream_events.*
    from stream_events
    {% if planned %}
    inner join {{ funnel_facts_funnels() }} as funnels
        on funnels.funnel_name = stream_events.funnel_name
    left join {{ plan }} as plan
        on plan.funnel_name = stream_events.funnel_name
        and plan.unit_id = stream_events.unit_id
    where funnels.rebuilt
        or {{ funnel_stream_key('stream_events') }} >= (
            plan.from_at, plan.from_step, plan.from_event_id, plan.from_anonymous_id collate "C"
        )
    {% endif %}

),

-- What the walk needs of each event besides its steps: its hold_constant values and its
-- breakdown value (a field, or a property as text like ->>).
described as (

    select
        in_scope.*,
        events.user_id,
        {{ funnel_hold_values_name() }}(events.properties, funnels.hold_constant) as hold_values,
        case
            when funnels.breakdown_property is not null
                then events.properties ->> funnels.breakdown_property
            else {{ funnel_breakdown_field('funnels.breakdown_field', 'events') }}
        end as breakdown_value

    from in_scope
    inner join {{ funnel_facts_funnels() }} as funnels
        on funnels.funnel_name = in_scope.funnel_name
    inner join {{ ref('stg_events') }} as events
        on events.anonymous_id = in_scope.anonymous_id
        and events.event_id = in_scope.event_id
        and events.occurred_at = in_scope.occurred_at

),

numbered as (

    select
        described.*,
        row_number() over unit_stream as stream_position,
        dense_rank() over (
            partition by funnel_name, unit_id order by hold_values
        )::integer as hold_group

    from described
    window unit_stream as (
        partition by funnel_name, unit_id
        order by occurred_at, sort_step, event_id, anonymous_id collate "C"
    )

),

streams as (

    select
        funnel_name,
        unit_id,
        array_agg(occurred_at order by stream_position) as times,
        array_agg(step_mask order by stream_position) as steps,
        array_agg(exclusion_mask order by stream_position) as exclusions,
        array_agg(hold_group order by stream_position) as holds,
        array_agg(event_id order by stream_position) as event_ids,
        array_agg(anonymous_id order by stream_position) as devices,
        array_agg(user_id order by stream_position) as users,
        array_agg(breakdown_value order by stream_position) as breakdowns

    from numbered
    group by funnel_name, unit_id

),

attempts as (

    select
        streams.funnel_name,
        streams.unit_id,
        walk.*

    from streams
    inner join {{ funnel_facts_funnels() }} as funnels
        on funnels.funnel_name = streams.funnel_name
    cross join lateral {{ funnel_walk_name() }}(
        funnels.step_count,
        funnels.order_mode,
        funnels.conversion_window,
        funnels.step_within,
        funnels.exclusion_from,
        funnels.exclusion_to,
        funnels.attribution,
        funnels.attribution_step,
        streams.times,
        streams.steps,
        streams.exclusions,
        streams.holds,
        streams.event_ids,
        streams.devices,
        streams.users,
        streams.breakdowns
    ) with ordinality as walk

),

final as (

    select
        attempts.funnel_name,
        funnels.content_hash,
        funnels.unit,
        attempts.unit_id,
        case
            when funnels.unit = 'device' then attempts.entry_user_id
            when starts_with(attempts.unit_id, 'user:') then substr(attempts.unit_id, 6)
        end as user_id,
        attempts.entry_device as anonymous_id,
        {% if planned %}coalesce(plan.first_attempt, 1){% else %}1{% endif %}
            + attempts.ordinality::integer - 1 as attempt_number,
        attempts.entry_event_id,
        attempts.entered_at,
        (attempts.entered_at at time zone 'UTC')::date as entry_day,
        attempts.entry_step,
        attempts.step_reached_at,
        attempts.furthest_step,
        attempts.outcome = 'converted' as converted,
        case when attempts.outcome = 'converted' then attempts.ended_at end as converted_at,
        case
            when attempts.outcome = 'converted'
                then extract(epoch from attempts.ended_at - attempts.entered_at)::float8
        end as seconds_to_convert,
        attempts.outcome,
        attempts.ended_at,
        attempts.deadline_at,
        attempts.breakdown_value,
        now() as derived_at,
        '{{ invocation_id }}'::text as invocation_id

    from attempts
    inner join {{ funnel_facts_funnels() }} as funnels
        on funnels.funnel_name = attempts.funnel_name
    {% if planned %}
    left join {{ plan }} as plan
        on plan.funnel_name = attempts.funnel_name
        and plan.unit_id = attempts.unit_id
    {% endif %}

)

select * from final
{%- endmacro %}


{#- SQL: a time before every planned point of the unit's funnels (funnel_write_plan), a constant
    so that PostgreSQL skips older partitions before the scan. Each unit's join already reads
    from its own point; this bound only narrows the scan.

    Device units: a point is the window start, or the entry of an attempt that ended at or
    after it. An attempt ends by its deadline, at most a conversion window after its entry, so
    `since - the longest conversion window of the device funnels` precedes every point (only
    unchanged funnels are planned, and they keep their window). It is a literal, read from the
    funnels when the model compiles: Citus plans a scalar subquery apart, even one over the
    funnels (a reference table), and then pulls the whole INSERT ... SELECT to the coordinator.

    User units: persons whose devices changed are planned from the beginning, so the bound is
    the plan's earliest point; that statement runs through the coordinator anyway. -#}
{% macro funnel_plan_lower_bound(unit, plan) -%}
    {%- if unit == 'user' -%}
        (select min(from_at) from {{ plan }})
    {%- else -%}
        {%- set since = "'" ~ retro_window().since ~ "'::timestamptz" -%}
        {%- set longest = run_query(
            "select coalesce(max(conversion_window_seconds), 0) from " ~ ref('stg_funnels')
            ~ " where unit = 'device'").columns[0].values()[0] -%}
        {{ since }} - interval '{{ longest | int }} seconds'
    {%- endif -%}
{%- endmacro %}


{#- The funnels with their versions, each step's `within` bound (element k bounds step k), the
    exclusions' ranges, and whether the run rebuilds them (a new version: not in the ledger).
    A subquery over reference tables, repeated where needed rather than a CTE used twice. -#}
{% macro funnel_facts_funnels() -%}
    (
        select
            funnels.funnel_name,
            versions.content_hash,
            funnels.step_count,
            funnels.order_mode,
            funnels.unit,
            funnels.conversion_window_seconds * interval '1 second' as conversion_window,
            funnels.breakdown_field,
            funnels.breakdown_property,
            funnels.attribution,
            funnels.attribution_step,
            funnels.hold_constant,
            bounds.step_within,
            bounds.exclusion_from,
            bounds.exclusion_to,
            {% if retro_is_incremental() -%}
            derived.name is null as rebuilt
            {%- else -%}
            true as rebuilt
            {%- endif %}

        from {{ ref('stg_funnels') }} as funnels
        inner join {{ ref('int_funnel_versions') }} as versions
            on versions.funnel_name = funnels.funnel_name
        inner join (
            select
                funnel_name,
                array_agg(within_seconds * interval '1 second' order by position)
                    filter (where role = 'step') as step_within,
                coalesce(array_agg(from_step order by position)
                    filter (where role = 'exclusion'), '{}') as exclusion_from,
                coalesce(array_agg(to_step order by position)
                    filter (where role = 'exclusion'), '{}') as exclusion_to
            from {{ ref('stg_funnel_steps') }}
            group by funnel_name
        ) as bounds
            on bounds.funnel_name = funnels.funnel_name
        {% if retro_is_incremental() -%}
        left join {{ retro_ledger_relation(this) }} as derived
            on derived.name = versions.funnel_name
            and derived.content_hash = versions.content_hash
        {%- endif %}
    )
{%- endmacro %}
