-- The declared funnels (the `funnels` seed), one row each, JSON-encoded texts decoded.
with

source as (

    select * from {{ ref('funnels') }}

),

decoded as (

    select
        funnel_name,
        content_hash,
        description #>> '{}' as description,
        owner #>> '{}' as owner,
        step_count,
        conversion_window_seconds,
        conversion_window_months,
        -- The window as an interval: add it to a UTC timestamp (calendar months clamp the day).
        conversion_window_seconds * interval '1 second'
            + conversion_window_months * interval '1 month' as conversion_window,
        order_mode,
        unit,
        breakdown_field,
        breakdown_property #>> '{}' as breakdown_property,
        breakdown_session,
        breakdown_person #>> '{}' as breakdown_person,
        attribution,
        attribution_step,
        attribution_unreached,
        -- A JSON array of names, kept as JSON: decoding it takes a subquery, which Citus cannot
        -- run next to a reference table inside the funnel facts' pushed-down INSERT ... SELECT.
        hold_constant,
        entries,
        exclusion_scope,
        broken_by

    from source

)

select * from decoded
