{{ config(materialized='view') }}
-- The most frequent complete paths of every path analysis (its declared top_paths), ranked by
-- paths, then units, then the steps in code-point order (retrolytics/semantics/paths.py).
with

counted as (

    select
        path_name,
        steps,
        count(*)::integer as paths,
        count(distinct unit_id)::integer as units

    from {{ ref('fct_paths') }}
    where has_path
    group by path_name, steps

),

ranked as (

    select
        counted.*,
        row_number() over (
            partition by counted.path_name
            order by counted.paths desc, counted.units desc,
                array_to_string(counted.steps, chr(1)) collate "C"
        )::integer as rank

    from counted

)

select
    ranked.path_name,
    ranked.rank,
    ranked.steps,
    cardinality(ranked.steps)::integer as step_count,
    ranked.paths,
    ranked.units

from ranked
inner join {{ ref('stg_paths') }} as paths on paths.path_name = ranked.path_name
where ranked.rank <= paths.top_paths
