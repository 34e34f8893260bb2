{{
    config(
        materialized='retention_mart',
        indexes=[{'columns': ['retention_name', 'cohort_period']}, {'columns': ['is_complete']}],
        pre_hook='set local enable_nestloop = off',
    )
}}
-- No nested loops (this transaction only): after autovacuum's ANALYZE, the estimates of this
-- model's chained CTEs compound to a few rows where an hourly run has thousands, and the
-- nested loops chosen for them ran a settled warehouse's hourly run for 31 s instead of
-- under 1 (benchmarks/RESULTS.md, 4c).
-- depends_on: {{ ref('int_retention_versions') }}
-- depends_on: {{ ref('int_retention_changed_cohorts') }}
-- One row per retention, cohort period, breakdown value and offset 0..periods: the cohort's
-- size, the units that returned in the period `period_offset` periods after the cohort's, the
-- rate, the same "at that offset or later" (cumulative), and whether the offset's period is
-- over. The rules: retrolytics/semantics/retention.py. A windowed run recomputes only the
-- cohorts whose facts changed (int_retention_changed_cohorts) and every cohort of a retention
-- whose version changed (materialization retention_mart); without a window, everything.
{%- set incremental = retention_mart_incremental() %}

with

retentions as (

    select
        retentions.*,
        {% if incremental -%}
        retro_ledger.name is not null
        {%- else -%}
        false
        {%- endif %} as derived

    from {{ ref('stg_retentions') }} as retentions
    inner join {{ ref('int_retention_versions') }} as versions
        on versions.retention_name = retentions.retention_name
    {% if incremental -%}
    left join {{ retro_ledger_relation(this) }} as retro_ledger
        on retro_ledger.name = versions.retention_name
        and retro_ledger.content_hash = versions.content_hash
    {%- endif %}

),

{% if incremental -%}
-- The cohorts recomputed of the retentions the mart holds at their current version.
recomputed_cohorts as materialized (

    select changed.retention_name, changed.cohort_index
    from {{ ref('int_retention_changed_cohorts') }} as changed
    inner join retentions
        on retentions.retention_name = changed.retention_name and retentions.derived

),

-- Their facts: the cells of each cohort's periods 0..periods, by the facts'
-- (retention_name, period_index) index; a retention of another version, all of its facts.
facts as (

    select facts.*
    from (
        select distinct recomputed_cohorts.retention_name, periods.period_index
        from recomputed_cohorts
        inner join retentions on retentions.retention_name = recomputed_cohorts.retention_name
        cross join lateral generate_series(
            recomputed_cohorts.cohort_index, recomputed_cohorts.cohort_index + retentions.periods
        ) as periods (period_index)
    ) as read
    inner join {{ ref('fct_retention_activity') }} as facts
        on facts.retention_name = read.retention_name
        and facts.period_index = read.period_index

    union all

    select facts.*
    from {{ ref('fct_retention_activity') }} as facts
    inner join retentions
        on retentions.retention_name = facts.retention_name and not retentions.derived

),
{%- else -%}
facts as (

    select * from {{ ref('fct_retention_activity') }}

),
{%- endif %}

-- The end of the data: the latest start or return event of any retention (as the funnels').
data_end as (

    select max(occurred_at) as data_end_at
    from {{ ref('int_retention_events') }}

),

end_periods as (

    select
        retentions.retention_name,
        {{ retention_period_index(retention_period_start('data_end.data_end_at', 'retentions'), 'retentions') }}
            as end_index

    from retentions
    cross join data_end
    where data_end.data_end_at is not null

),

-- A unit's cells: its devices' cells summed.
cells as (

    select
        retention_name,
        unit_id,
        period_index,
        period_start,
        breakdown_value,
        sum(start_events) as start_events,
        sum(return_events) as return_events

    from facts
    group by retention_name, unit_id, period_index, period_start, breakdown_value

),

-- A first-time unit's first start among the facts read (all of them without a window); a
-- windowed run keeps it only if the unit has no earlier start at all (one lookup of the facts'
-- (retention_name, unit_id, first_start_at, first_start_event_id) index).
first_starts as (

    select distinct on (facts.retention_name, facts.unit_id)
        facts.retention_name,
        facts.unit_id,
        facts.period_index,
        facts.period_start,
        facts.breakdown_value,
        facts.first_start_at,
        facts.first_start_event_id

    from facts
    inner join retentions
        on retentions.retention_name = facts.retention_name
        and retentions.cohorting = 'first_time'
    where facts.start_events > 0
    order by
        facts.retention_name,
        facts.unit_id,
        facts.first_start_at,
        facts.first_start_event_id

),

first_ever as (

    select
        first_starts.retention_name,
        first_starts.unit_id,
        first_starts.period_index,
        first_starts.period_start,
        first_starts.breakdown_value

    from first_starts
    {% if incremental -%}
    where not exists (
        select 1 from {{ ref('fct_retention_activity') }} as earlier
        where earlier.retention_name = first_starts.retention_name
            and earlier.unit_id = first_starts.unit_id
            and (earlier.first_start_at, earlier.first_start_event_id)
                < (first_starts.first_start_at, first_starts.first_start_event_id)
    )
    {%- endif %}

),

-- Cohort membership per breakdown value: the first start ever, or every period with a start;
-- in a windowed run, of the recomputed cohorts only.
members_by_value as (

    select all_members.*
    from (
        select * from first_ever

        union all

        select cells.retention_name, cells.unit_id, cells.period_index, cells.period_start,
            cells.breakdown_value
        from cells
        inner join retentions
            on retentions.retention_name = cells.retention_name
            and retentions.cohorting = 'recurring'
        where cells.start_events > 0
    ) as all_members
    {% if incremental -%}
    inner join retentions on retentions.retention_name = all_members.retention_name
    where not retentions.derived
        or exists (
            select 1 from recomputed_cohorts
            where recomputed_cohorts.retention_name = all_members.retention_name
                and recomputed_cohorts.cohort_index = all_members.period_index
        )
    {%- endif %}

),

members as (

    select distinct retention_name, unit_id, period_index, period_start, '(all)'::text as breakdown_value
    from members_by_value

    union all

    select members_by_value.*
    from members_by_value
    inner join retentions
        on retentions.retention_name = members_by_value.retention_name
        and retentions.has_breakdown
    where members_by_value.breakdown_value <> '(all)'

),

returns_by_value as (

    select retention_name, unit_id, period_index, breakdown_value, return_events
    from cells
    where return_events > 0

),

returns as (

    select returns_by_value.retention_name, returns_by_value.unit_id,
        returns_by_value.period_index, returns_by_value.breakdown_value
    from returns_by_value
    inner join retentions on retentions.retention_name = returns_by_value.retention_name
    -- A value's rows never hold the value '(all)': its returns count in the overall rows only.
    where returns_by_value.return_events >= retentions.min_occurrences
        and returns_by_value.breakdown_value <> '(all)'

    union all

    select returns_by_value.retention_name, returns_by_value.unit_id,
        returns_by_value.period_index, '(all)'::text as breakdown_value
    from returns_by_value
    inner join retentions on retentions.retention_name = returns_by_value.retention_name
    group by returns_by_value.retention_name, returns_by_value.unit_id,
        returns_by_value.period_index, retentions.min_occurrences
    having sum(returns_by_value.return_events) >= retentions.min_occurrences

),

-- Each member's returns at offsets 1..periods.
returned as (

    select
        members.retention_name,
        members.period_index,
        members.breakdown_value,
        members.unit_id,
        returns.period_index - members.period_index as period_offset

    from members
    inner join retentions on retentions.retention_name = members.retention_name
    inner join returns
        on returns.retention_name = members.retention_name
        and returns.unit_id = members.unit_id
        -- A session or person value describes the member: any of its returns counts.
        and returns.breakdown_value = case
            when retentions.returns_match_value then members.breakdown_value else '(all)'
        end
        and returns.period_index between members.period_index + 1
            and members.period_index + retentions.periods

),

last_returns as (

    select retention_name, period_index, breakdown_value, unit_id,
        max(period_offset) as last_offset
    from returned
    group by retention_name, period_index, breakdown_value, unit_id

),

cohorts as (

    select retention_name, period_index, period_start, breakdown_value,
        count(*) as cohort_size
    from members
    group by retention_name, period_index, period_start, breakdown_value

),

grid as (

    select
        cohorts.*,
        offsets.period_offset,
        cohorts.period_index + offsets.period_offset <= end_periods.end_index as has_begun,
        cohorts.period_index + offsets.period_offset < end_periods.end_index as is_complete

    from cohorts
    inner join retentions on retentions.retention_name = cohorts.retention_name
    inner join end_periods on end_periods.retention_name = cohorts.retention_name
    cross join lateral generate_series(0, retentions.periods) as offsets (period_offset)

),

returned_counts as (

    select retention_name, period_index, breakdown_value, period_offset,
        count(*) as returned_units
    from returned
    group by retention_name, period_index, breakdown_value, period_offset

),

cumulative_counts as (

    select grid.retention_name, grid.period_index, grid.breakdown_value, grid.period_offset,
        count(last_returns.unit_id) as cumulative_units
    from grid
    left join last_returns
        on last_returns.retention_name = grid.retention_name
        and last_returns.period_index = grid.period_index
        and last_returns.breakdown_value = grid.breakdown_value
        and last_returns.last_offset >= grid.period_offset
    where grid.period_offset > 0
    group by grid.retention_name, grid.period_index, grid.breakdown_value, grid.period_offset

),

final as (

    select
        grid.retention_name,
        grid.period_start as cohort_period,
        grid.breakdown_value,
        grid.period_offset::integer as period_offset,
        grid.cohort_size,
        case
            when grid.period_offset = 0 then grid.cohort_size
            when grid.has_begun then coalesce(returned_counts.returned_units, 0)
        end as returned_units,
        case
            when grid.period_offset = 0 then grid.cohort_size
            when grid.has_begun then coalesce(cumulative_counts.cumulative_units, 0)
        end as cumulative_returned_units,
        grid.is_complete

    from grid
    left join returned_counts
        on returned_counts.retention_name = grid.retention_name
        and returned_counts.period_index = grid.period_index
        and returned_counts.breakdown_value = grid.breakdown_value
        and returned_counts.period_offset = grid.period_offset
    left join cumulative_counts
        on cumulative_counts.retention_name = grid.retention_name
        and cumulative_counts.period_index = grid.period_index
        and cumulative_counts.breakdown_value = grid.breakdown_value
        and cumulative_counts.period_offset = grid.period_offset

)

select
    retention_name,
    cohort_period,
    breakdown_value,
    period_offset,
    cohort_size,
    returned_units,
    returned_units::double precision / cohort_size as retention_rate,
    cumulative_returned_units,
    cumulative_returned_units::double precision / cohort_size as cumulative_retention_rate,
    is_complete

from final
