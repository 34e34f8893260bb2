-- The narrow stream of the path analyses: one row per path and event that is a step of it,
-- with its label (the node it is in a path). The precedence, written once in
-- retrolytics/semantics/paths.py: an event matching an exclusion is dropped; else the anchor's
-- label; else the first step definition it matches (stg_path_nodes.position); else, for
-- step_kind pageviews or both, a pageview's page_path. A view: fct_paths reads it restricted to
-- the devices and times its plan names (filters on anonymous_id and occurred_at reach the
-- defined_events and stg_events scans through the grouping).
with

paths as (

    select path_name, anchor_label, step_kind from {{ ref('stg_paths') }}

),

nodes as (

    select nodes.*, paths.anchor_label
    from {{ ref('stg_path_nodes') }} as nodes
    inner join paths on paths.path_name = nodes.path_name

),

-- Anchors, steps and exclusions by event definition: matched already in defined_events.
by_definition as (

    select
        nodes.path_name,
        nodes.role,
        case when nodes.role = 'anchor' then 0 else nodes.position end as precedence,
        case when nodes.role = 'anchor' then nodes.anchor_label else nodes.definition_name end
            as label,
        defined.anchor_device as anonymous_id,
        defined.event_id,
        defined.occurred_at

    from nodes
    inner join (
        select definition_name, anonymous_id as anchor_device, event_id, occurred_at
        from {{ ref('defined_events') }}
    ) as defined
        on defined.definition_name = nodes.definition_name

),

-- An anchor or exclusion by raw type (`type: custom`, `name: ...`).
by_type as (

    select
        nodes.path_name,
        nodes.role,
        0 as precedence,
        nodes.anchor_label as label,
        events.anonymous_id,
        events.event_id,
        events.occurred_at

    from nodes
    inner join {{ ref('stg_events') }} as events
        on events.type = nodes.event_type
        and (nodes.event_name is null or events.name = nodes.event_name)

),

-- Pages: every pageview with a path, for step_kind pageviews and both (after every definition).
by_page as (

    select
        paths.path_name,
        'page' as role,
        2147483647 as precedence,
        events.page_path as label,
        events.anonymous_id,
        events.event_id,
        events.occurred_at

    from paths
    inner join {{ ref('stg_events') }} as events
        on events.type = 'pageview' and events.page_path is not null
    where paths.step_kind in ('pageviews', 'both')

),

candidates as (

    select * from by_definition
    union all
    select * from by_type
    union all
    select * from by_page

),

final as (

    select
        path_name,
        anonymous_id,
        event_id,
        occurred_at,
        (array_agg(label order by precedence))[1] as label

    from candidates
    group by path_name, anonymous_id, event_id, occurred_at
    having not bool_or(role = 'exclude')

)

select * from final
