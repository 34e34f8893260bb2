-- One row per declared funnel with what its walk needs: the version, the conversion window, each
-- step's `within` bound (element k bounds step k) and the exclusions' step ranges. A view over
-- the seeds (reference tables on Citus), read by both attempts models.
with

funnels as (

    select * from {{ ref('stg_funnels') }}

),

versions as (

    select funnel_name, content_hash from {{ ref('int_funnel_versions') }}

),

bounds as (

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

),

final as (

    select
        funnels.funnel_name,
        versions.content_hash,
        funnels.unit,
        funnels.step_count,
        funnels.order_mode,
        funnels.conversion_window,
        funnels.attribution,
        funnels.attribution_step,
        funnels.breakdown_session,
        funnels.breakdown_person,
        funnels.hold_constant,
        funnels.entries,
        funnels.exclusion_scope,
        funnels.broken_by,
        bounds.step_within,
        bounds.exclusion_from,
        bounds.exclusion_to

    from funnels
    inner join versions on versions.funnel_name = funnels.funnel_name
    inner join bounds on bounds.funnel_name = funnels.funnel_name

)

select * from final
