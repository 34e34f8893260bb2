{{
    config(
        materialized='distributed_incremental',
        time_column='occurred_at',
        version_column='funnel_name',
        hash_column='content_hash',
        versions_model='int_funnel_versions',
        indexes=[{'columns': ['occurred_at']}, {'columns': ['anonymous_id', 'funnel_name']}],
        post_hook=after_commit('{{ analyze_when_grown() }}'),
    )
}}
-- depends_on: {{ ref('int_funnel_versions') }}

-- The funnels' step events: one row per funnel and event that matches one of its steps or
-- exclusions, with everything the walk needs of the event (no funnel model reads an event
-- table after this one). Kept per partition window like defined_events: a run derives the
-- window's events, and a new or edited funnel over all history. A strict funnel with
-- `broken_by: any_event` also gets a row for every other event of stg_events (masks 0): any
-- event of the unit breaks its attempts, so its stream is the units' whole event stream, as
-- PostHog's strict funnels read every event of the person. That is the cost of the option:
-- rows here (and walked) grow with all events, not with the funnel's step events.
-- On Citus the whole INSERT ... SELECT runs on the shards of raw.events: every CTE is inlined,
-- and each leg of `matches` carries its funnel's columns, so nothing joins on top of the union
-- (DEVELOPERS.md, "Keeping a model's statement on the shards").

with

funnels as not materialized (

    select
        funnels.funnel_name,
        versions.content_hash,
        funnels.unit,
        funnels.hold_constant,
        funnels.breakdown_field,
        funnels.breakdown_property,
        funnels.broken_by,
        {{ retro_is_derived() }} as derived

    from {{ ref('stg_funnels') }} as funnels
    inner join {{ ref('int_funnel_versions') }} as versions
        on versions.funnel_name = funnels.funnel_name
    {{ retro_ledger_join('versions.funnel_name', 'versions.content_hash') }}

),

-- The steps and exclusions, each with its funnel's columns.
steps as not materialized (

    select
        steps.role,
        steps.position,
        steps.definition_name,
        steps.event_type,
        steps.event_name,
        funnels.*

    from {{ ref('stg_funnel_steps') }} as steps
    inner join funnels on funnels.funnel_name = steps.funnel_name

),

-- broken_by: any_event: every event of the unit is in its stream, as a row with neither step
-- nor exclusion (role `other`); `final` merges it with the event's step and exclusion rows.
any_event_steps as not materialized (

    select
        'other'::text as role,
        0 as position,
        null::text as definition_name,
        null::text as event_type,
        null::text as event_name,
        funnels.*

    from funnels
    where funnels.broken_by = 'any_event'

),

-- Steps by event definition: the events come from defined_events, matched already. The window
-- is a constant on occurred_at (an index range); a new or edited funnel reads all history.
by_definition_in_window as (

    select {{ funnel_event_columns('defined') }}, steps.*
    from steps
    inner join {{ ref('defined_events') }} as defined
        on defined.definition_name = steps.definition_name
    where steps.derived and {{ retro_in_window('defined.occurred_at') }}

),

-- Each EXISTS names no outer column: PostgreSQL checks it once, before the scan, so a run
-- without a new or edited funnel reads none of history.
by_definition_in_history as (

    select {{ funnel_event_columns('defined') }}, steps.*
    from steps
    inner join {{ ref('defined_events') }} as defined
        on defined.definition_name = steps.definition_name
    where not steps.derived
        and exists (select 1 from steps where not derived and definition_name is not null)

),

-- Steps by raw type (`type: custom`, `name: ...`): the only read of the events themselves, of
-- the window's partitions, or of all history for a new or edited funnel with such a step.
by_type_in_window as (

    select {{ funnel_event_columns('events') }}, steps.*
    from steps
    inner join {{ ref('stg_events') }} as events
        on events.type = steps.event_type
        and (steps.event_name is null or events.name = steps.event_name)
    where steps.derived and {{ retro_in_window('events.occurred_at') }}
        and exists (select 1 from steps where derived and event_type is not null)

),

by_type_in_history as (

    select {{ funnel_event_columns('events') }}, steps.*
    from steps
    inner join {{ ref('stg_events') }} as events
        on events.type = steps.event_type
        and (steps.event_name is null or events.name = steps.event_name)
    where not steps.derived
        and exists (select 1 from steps where not derived and event_type is not null)

),

-- Every event, as the raw-type steps read them: the window's, or all history for a new or
-- edited funnel.
any_event_in_window as (

    select {{ funnel_event_columns('events') }}, steps.*
    from any_event_steps as steps
    cross join {{ ref('stg_events') }} as events
    where steps.derived and {{ retro_in_window('events.occurred_at') }}
        and exists (select 1 from any_event_steps where derived)

),

any_event_in_history as (

    select {{ funnel_event_columns('events') }}, steps.*
    from any_event_steps as steps
    cross join {{ ref('stg_events') }} as events
    where not steps.derived
        and exists (select 1 from any_event_steps where not derived)

),

matches as (

    select * from by_definition_in_window
    union all
    select * from by_definition_in_history
    union all
    select * from by_type_in_window
    union all
    select * from by_type_in_history
    union all
    select * from any_event_in_window
    union all
    select * from any_event_in_history

),

-- What the walk needs of each match: its hold_constant values and its breakdown value.
described as (

    select
        funnel_name,
        content_hash,
        unit,
        role,
        position,
        anonymous_id,
        event_id,
        occurred_at,
        user_id,
        {{ funnel_hold_values_name() }}(properties, hold_constant) as hold_values,
        case
            when breakdown_property is not null then properties ->> breakdown_property
            else {{ funnel_breakdown_field('breakdown_field', 'matches') }}
        end as breakdown_value

    from matches

),

-- One row per funnel and event: the steps (bit k-1 = step k) and exclusions it matches (none
-- for the other events of a `broken_by: any_event` stream).
final as (

    select
        funnel_name,
        content_hash,
        unit,
        anonymous_id,
        event_id,
        occurred_at,
        min(user_id) as user_id,
        coalesce(bit_or(1 << (position - 1)) filter (where role = 'step'), 0) as step_mask,
        coalesce(bit_or(1 << (position - 1)) filter (where role = 'exclusion'), 0)
            as exclusion_mask,
        -- Events that match no step sort after every step at the same instant.
        coalesce(min(position) filter (where role = 'step'), 99) as sort_step,
        (array_agg(hold_values))[1] as hold_values,
        min(breakdown_value) as breakdown_value,
        now() as derived_at,
        '{{ invocation_id }}'::text as invocation_id

    from described
    group by funnel_name, content_hash, unit, anonymous_id, event_id, occurred_at

)

select * from final
