{{
    config(
        materialized='distributed_table',
        distributed_by='retention_name',
    )
}}
-- depends_on: {{ ref('int_retention_plan') }}
-- depends_on: {{ ref('int_retention_replaced_cells') }}
-- depends_on: {{ ref('fct_retention_activity') }}
-- The (retention, cohort period) groups a windowed run changed, for mart_retention to delete
-- and recompute. A cell of a unit in period p counts in the cohorts p - periods .. p (as a
-- start at offset 0, as a return after), so the changed cells (those the plan replaced,
-- int_retention_replaced_cells, and those written in their place) list those. A first-time
-- unit's cohort is the period of its first start ever: when a changed cell holds a start not
-- later than the unit's first among its kept cells, the unit may have entered or left that
-- kept cell's cohort too. And the cohorts the mart had not finished (is_complete false) are
-- redone: the end of the data may have moved. Everything is read through the plan and indexes,
-- so a run costs what changed, not the history. Empty without a window: the mart is rebuilt.
{%- set previous_mart = retention_previous_relation('mart_retention') %}

with

retentions as (

    select * from {{ ref('stg_retentions') }}

),

plan as (

    select * from {{ ref('int_retention_plan') }}

),

written as (

    select
        facts.retention_name,
        facts.unit_id,
        facts.period_index,
        facts.first_start_at,
        facts.first_start_event_id

    from plan
    inner join {{ ref('fct_retention_activity') }} as facts
        on facts.anonymous_id = plan.anonymous_id
        and facts.period_started_at >= plan.recompute_from
        and facts.period_started_at <= plan.recompute_until

),

changed_cells as materialized (

    select retention_name, unit_id, period_index, first_start_at, first_start_event_id
    from {{ ref('int_retention_replaced_cells') }}

    union all

    select * from written

),

by_cells as (

    select distinct changed_cells.retention_name, cohorts.cohort_index
    from changed_cells
    inner join retentions on retentions.retention_name = changed_cells.retention_name
    cross join lateral generate_series(
        changed_cells.period_index - retentions.periods, changed_cells.period_index
    ) as cohorts (cohort_index)

),

-- Per first-time unit with a changed cell: its first start among the changed cells.
changed_units as (

    select distinct on (changed_cells.retention_name, changed_cells.unit_id)
        changed_cells.retention_name,
        changed_cells.unit_id,
        changed_cells.first_start_at,
        changed_cells.first_start_event_id

    from changed_cells
    inner join retentions
        on retentions.retention_name = changed_cells.retention_name
        and retentions.cohorting = 'first_time'
    order by
        changed_cells.retention_name,
        changed_cells.unit_id,
        changed_cells.first_start_at nulls last,
        changed_cells.first_start_event_id

),

-- The unit's first start among the cells the run kept: its cohort changed if a changed start
-- comes before it (the unit left it, or never was in it). DISTINCT ON rather than a lateral
-- LIMIT 1 per unit, which Citus cannot push down (the cells are distributed by device, the unit
-- may be a person): Citus joins the changed units with each shard's cells and keeps each
-- unit's first on the coordinator.
kept_first_starts as (

    select distinct on (changed_units.retention_name, changed_units.unit_id)
        changed_units.retention_name,
        changed_units.first_start_at as changed_first_start_at,
        changed_units.first_start_event_id as changed_first_start_event_id,
        facts.period_index as cohort_index,
        facts.first_start_at,
        facts.first_start_event_id

    from changed_units
    inner join {{ ref('fct_retention_activity') }} as facts
        on facts.retention_name = changed_units.retention_name
        and facts.unit_id = changed_units.unit_id
    where facts.first_start_at is not null
        and not exists (
            select 1 from plan
            where plan.anonymous_id = facts.anonymous_id
                and facts.period_started_at >= plan.recompute_from
                and facts.period_started_at <= plan.recompute_until
        )
    order by
        changed_units.retention_name,
        changed_units.unit_id,
        facts.first_start_at,
        facts.first_start_event_id

),

kept_cohorts_moved as (

    select retention_name, cohort_index
    from kept_first_starts
    where (changed_first_start_at, changed_first_start_event_id)
        <= (first_start_at, first_start_event_id)

),

unfinished as (

    {% if previous_mart is not none -%}
    select distinct
        mart.retention_name,
        {{ retention_period_index('mart.cohort_period', 'retentions') }} as cohort_index
    from {{ previous_mart }} as mart
    inner join retentions on retentions.retention_name = mart.retention_name
    where not mart.is_complete
    {%- else -%}
    select null::text as retention_name, null::bigint as cohort_index
    where false
    {%- endif %}

),

changed as (

    select retention_name, cohort_index from by_cells
    union
    select retention_name, cohort_index from kept_cohorts_moved
    union
    select retention_name, cohort_index from unfinished

),

final as (

    select
        changed.retention_name,
        changed.cohort_index,
        {{ retention_index_start('changed.cohort_index', 'retentions') }} as cohort_period

    from changed
    inner join retentions on retentions.retention_name = changed.retention_name
    where {{ 'true' if retro_window() is not none else 'false' }}

)

select * from final
