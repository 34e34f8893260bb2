{{ config(materialized='view') }}
-- The edges of every path analysis for a Sankey: per path, step index k (the source's position
-- in the path, from 1), source and target: the paths walking that edge at k, the distinct units
-- among them and the median seconds between the two steps (retrolytics/semantics/paths.py).
select
    segments.path_name,
    step.k::integer as step_index,
    segments.steps[step.k] as source,
    segments.steps[step.k + 1] as target,
    count(*)::integer as paths,
    count(distinct segments.unit_id)::integer as units,
    percentile_cont(0.5) within group (
        order by extract(epoch from segments.step_times[step.k + 1] - segments.step_times[step.k])
    )::double precision as median_seconds_between

from {{ ref('fct_paths') }} as segments
cross join lateral generate_series(1, segments.step_count - 1) as step (k)
where segments.has_path
group by segments.path_name, step.k, segments.steps[step.k], segments.steps[step.k + 1]
