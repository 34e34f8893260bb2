-- The declared retention analyses (the `retentions` seed), one row each, JSON texts decoded.
with

source as (

    select * from {{ ref('retentions') }}

),

decoded as (

    select
        retention_name,
        content_hash,
        description #>> '{}' as description,
        owner #>> '{}' as owner,
        start_definition,
        start_type,
        start_name #>> '{}' as start_name,
        return_definition,
        return_type,
        return_name #>> '{}' as return_name,
        period,
        periods,
        cohorting,
        unit,
        breakdown_field,
        breakdown_property #>> '{}' as breakdown_property,
        breakdown_session,
        breakdown_person #>> '{}' as breakdown_person,
        coalesce(breakdown_field, breakdown_session) is not null
            or breakdown_property is not null
            or breakdown_person is not null as has_breakdown,
        -- A return counts for a value only with that value (the event's own field or
        -- property); a session or person value describes the cohort member only.
        breakdown_field is not null or breakdown_property is not null as returns_match_value,
        min_occurrences,
        week_start,
        time_zone

    from source

)

select * from decoded
