{{ config(materialized='view') }}
-- Sessions per day for dashboards and the demo; bots left out.
select
    session_day,
    count(*)::integer as sessions,
    count(distinct anonymous_id)::integer as devices,
    count(distinct person_id)::integer as persons,
    sum(pageview_count)::integer as pageviews,
    count(*) filter (where bounced)::integer as bounced_sessions,
    (count(*) filter (where bounced))::double precision / count(*) as bounce_rate,
    percentile_cont(0.5) within group (order by duration_seconds) as median_duration_seconds,
    avg(duration_seconds) as mean_duration_seconds

from {{ ref('fct_sessions') }}
where not is_bot
group by session_day
