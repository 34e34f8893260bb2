-- Every event that matches a step or an exclusion of a funnel, with the unit it counts for:
-- the device (anonymous_id) for `unit: device`, the person for `unit: user`
-- (int_device_persons; a device never identified is the person 'device:<anonymous_id>').
-- A view: fct_funnel_entries reads it restricted to the units and times a run recomputes.
with

funnels as (

    select funnel_name, unit from {{ ref('stg_funnels') }}

),

references_ as (

    select funnel_name, role, position, definition_name, event_type, event_name
    from {{ ref('stg_funnel_steps') }}

),

by_definition as (

    select
        references_.funnel_name,
        references_.role,
        references_.position,
        defined.anonymous_id,
        defined.event_id,
        defined.occurred_at

    from {{ ref('defined_events') }} as defined
    inner join references_ on references_.definition_name = defined.definition_name

),

by_type as (

    select
        references_.funnel_name,
        references_.role,
        references_.position,
        events.anonymous_id,
        events.event_id,
        events.occurred_at

    from {{ ref('stg_events') }} as events
    inner join references_
        on references_.event_type = events.type
        and (references_.event_name is null or references_.event_name = events.name)

),

matched as (

    select * from by_definition
    union all
    select * from by_type

),

with_unit as (

    select
        matched.funnel_name,
        matched.role,
        matched.position,
        matched.anonymous_id,
        matched.event_id,
        matched.occurred_at,
        case funnels.unit
            when 'device' then matched.anonymous_id
            else coalesce(persons.person_id, 'device:' || matched.anonymous_id)
        end as unit_id

    from matched
    inner join funnels on funnels.funnel_name = matched.funnel_name
    left join {{ ref('int_device_persons') }} as persons
        on funnels.unit = 'user'
        and persons.anonymous_id = matched.anonymous_id
        and matched.occurred_at >= persons.valid_from
        and matched.occurred_at < persons.valid_until

)

select * from with_unit
