-- The steps and exclusions of the declared funnels (the `funnel_steps` seed).
with

source as (

    select * from {{ ref('funnel_steps') }}

),

decoded as (

    select
        funnel_name,
        role,
        position,
        label #>> '{}' as label,
        definition_name,
        event_type,
        event_name #>> '{}' as event_name,
        within_seconds,
        from_step,
        to_step

    from source

)

select * from decoded
