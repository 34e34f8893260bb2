{{
    config(
        materialized='distributed_incremental',
        time_column='occurred_at',
        version_column='retention_name',
        hash_column='content_hash',
        versions_model='int_retention_versions',
        indexes=[{'columns': ['occurred_at']}, {'columns': ['anonymous_id', 'occurred_at']}],
        post_hook=after_commit('{{ analyze_when_grown() }}'),
    )
}}
-- depends_on: {{ ref('int_retention_versions') }}

-- The retention analyses' narrow input stream: one row per retention and event that is its
-- start or its return event (or both), with the event's breakdown value. No retention model
-- reads an event table after this one. Kept per partition window like the funnels' step
-- events: a run derives the window's events, a new or edited retention all history.

with

retentions as not materialized (

    select
        retentions.retention_name,
        versions.content_hash,
        retentions.start_definition,
        retentions.start_type,
        retentions.start_name,
        retentions.return_definition,
        retentions.return_type,
        retentions.return_name,
        retentions.breakdown_field,
        retentions.breakdown_property,
        {{ retro_is_derived() }} as derived

    from {{ ref('stg_retentions') }} as retentions
    inner join {{ ref('int_retention_versions') }} as versions
        on versions.retention_name = retentions.retention_name
    {{ retro_ledger_join('versions.retention_name', 'versions.content_hash') }}

),

-- The start and the return event of each retention, one row each (role), with the retention's
-- columns.
refs as not materialized (

    select
        retention_name,
        content_hash,
        breakdown_field,
        breakdown_property,
        derived,
        refs.role,
        refs.definition_name,
        refs.event_type,
        refs.event_name

    from retentions
    cross join lateral (
        values
            ('start', start_definition, start_type, start_name),
            ('return', return_definition, return_type, return_name)
    ) as refs (role, definition_name, event_type, event_name)

),

-- By event definition: matched already in defined_events. The window is a constant on
-- occurred_at; a new or edited retention reads all history. Each EXISTS names no outer
-- column, so PostgreSQL decides it once, before the scan.
by_definition_in_window as (

    select {{ funnel_event_columns('defined') }}, refs.*
    from refs
    inner join {{ ref('defined_events') }} as defined
        on defined.definition_name = refs.definition_name
    where refs.derived and {{ retro_in_window('defined.occurred_at') }}

),

by_definition_in_history as (

    select {{ funnel_event_columns('defined') }}, refs.*
    from refs
    inner join {{ ref('defined_events') }} as defined
        on defined.definition_name = refs.definition_name
    where not refs.derived
        and exists (select 1 from refs where not derived and definition_name is not null)

),

-- By raw type (`type: pageview`, `type: custom, name: ...`): the only read of the events.
by_type_in_window as (

    select {{ funnel_event_columns('events') }}, refs.*
    from refs
    inner join {{ ref('stg_events') }} as events
        on events.type = refs.event_type
        and (refs.event_name is null or events.name = refs.event_name)
    where refs.derived and {{ retro_in_window('events.occurred_at') }}
        and exists (select 1 from refs where derived and event_type is not null)

),

by_type_in_history as (

    select {{ funnel_event_columns('events') }}, refs.*
    from refs
    inner join {{ ref('stg_events') }} as events
        on events.type = refs.event_type
        and (refs.event_name is null or events.name = refs.event_name)
    where not refs.derived
        and exists (select 1 from refs where not derived and event_type is not null)

),

matches as (

    select * from by_definition_in_window
    union all
    select * from by_definition_in_history
    union all
    select * from by_type_in_window
    union all
    select * from by_type_in_history

),

-- One row per retention and event: start, return or both; its breakdown value as text. Each
-- match carries its retention's columns, so nothing joins on top of the union (on Citus:
-- DEVELOPERS.md, "Keeping a model's statement on the shards").
final as (

    select
        retention_name,
        content_hash,
        anonymous_id,
        event_id,
        occurred_at,
        bool_or(role = 'start') as is_start,
        bool_or(role = 'return') as is_return,
        min(
            case
                when breakdown_property is not null then properties ->> breakdown_property
                else {{ funnel_breakdown_field('breakdown_field', 'matches') }}
            end
        ) as breakdown_value,
        now() as derived_at,
        '{{ invocation_id }}'::text as invocation_id

    from matches
    group by retention_name, content_hash, anonymous_id, event_id, occurred_at

)

select * from final
