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
        breakdown_field is not null or breakdown_property is not null as has_breakdown,
        min_occurrences,
        week_start,
        time_zone

    from source

)

select * from decoded
