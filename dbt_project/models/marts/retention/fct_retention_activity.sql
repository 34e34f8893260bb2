{{
    config(
        materialized='distributed_incremental',
        time_column='period_started_at',
        version_column='retention_name',
        hash_column='content_hash',
        versions_model='int_retention_versions',
        plan_model='int_retention_plan',
        indexes=[
            {'columns': ['anonymous_id', 'period_started_at']},
            {'columns': ['retention_name', 'unit_id', 'first_start_at', 'first_start_event_id']},
            {'columns': ['retention_name', 'period_index']},
        ],
        post_hook=after_commit('{{ analyze_when_grown() }}'),
    )
}}
-- depends_on: {{ ref('int_retention_versions') }}
-- depends_on: {{ ref('int_retention_plan') }}
-- depends_on: {{ ref('int_retention_replaced_cells') }}
-- depends_on: {{ ref('fct_sessions') }}
-- depends_on: {{ ref('dim_person_traits') }}
-- One row per retention, device, unit, period and breakdown value in which the device did the
-- retention's start or return event: how many start and return events, and the first start
-- (time and event_id, to pick a unit's first start ever). The unit is the device, or for
-- `unit: user` the person the device belonged to at the event's time (int_device_persons).
-- Periods are the retention's wall-clock periods (macros/retention.sql). A session or person
-- breakdown reads the event's session (fct_sessions) or its person's trait as of its time
-- (dim_person_traits), joined only when an analysis needs it (macros/funnels/). The rules in words and
-- the Python reference the tests compare with: retrolytics/semantics/retention.py.
--
-- A windowed run rebuilds, per device of its plan (int_retention_plan), every cell from
-- recompute_from on (the cells' period_started_at); a first run, a run without a window and a
-- new or edited retention rebuild everything of it.

{%- set needs = retention_breakdown_needs() %}

with

retentions as not materialized (

    select
        retentions.*,
        versions.content_hash as version_hash,
        {{ retro_is_derived() }} as derived

    from {{ ref('stg_retentions') }} as retentions
    inner join {{ ref('int_retention_versions') }} as versions
        on versions.retention_name = retentions.retention_name
    {{ retro_ledger_join('versions.retention_name', 'versions.content_hash') }}

),

stream as (

    {% if retro_window() is none -%}
    select stream.*, null::timestamptz as recompute_from
    from {{ ref('int_retention_events') }} as stream
    {%- else -%}
    -- Unchanged retentions: each device of the plan from a day before its recompute_from (a
    -- period's local start may map to an instant up to a DST shift after its first event; cells
    -- that start before recompute_from are dropped below, as they were not forgotten), a device
    -- whose identity changed from -infinity: one index range per device, so a run reads the
    -- plan's devices' rows only (LATERAL; OFFSET 0 keeps PostgreSQL from flattening it into a
    -- scan of the stream).
    select stream.*, planned.recompute_from
    from {{ ref('int_retention_plan') }} as planned
    cross join lateral (
        select device_rows.*
        from {{ ref('int_retention_events') }} as device_rows
        where device_rows.anonymous_id = planned.anonymous_id
            and device_rows.occurred_at >= planned.recompute_from - interval '1 day'
        offset 0
    ) as stream
    inner join retentions
        on retentions.retention_name = stream.retention_name and retentions.derived

    union all

    -- New or edited retentions: all history.
    select stream.*, null::timestamptz as recompute_from
    from {{ ref('int_retention_events') }} as stream
    inner join retentions
        on retentions.retention_name = stream.retention_name and not retentions.derived
    {%- endif %}

),

located as (

    select
        stream.retention_name,
        retentions.version_hash as content_hash,
        stream.anonymous_id,
        case
            when retentions.unit = 'user'
                then coalesce(persons.person_id, 'device:' || stream.anonymous_id)
            else stream.anonymous_id
        end as unit_id,
        stream.event_id,
        stream.occurred_at,
        stream.is_start,
        stream.is_return,
        coalesce(
            {{ funnel_context_breakdown('stream', 'retentions', needs.session, needs.person) }},
            '(none)'
        ) as breakdown_value,
        stream.recompute_from,
        {{ retention_period_start('stream.occurred_at', 'retentions') }} as period_start,
        retentions.period,
        retentions.time_zone

    from stream
    inner join retentions on retentions.retention_name = stream.retention_name
    left join {{ ref('int_device_persons') }} as persons
        on retentions.unit = 'user'
        and persons.anonymous_id = stream.anonymous_id
        and persons.valid_from <= stream.occurred_at
        and persons.valid_until > stream.occurred_at
    {{ funnel_context_joins('stream', 'retentions', needs.session, needs.person) }}

),

cells as (

    select
        located.retention_name,
        located.content_hash,
        located.anonymous_id,
        located.unit_id,
        {{ retention_period_index('located.period_start', 'located') }} as period_index,
        located.period_start,
        located.period_start at time zone located.time_zone as period_started_at,
        located.breakdown_value,
        (count(*) filter (where located.is_start))::integer as start_events,
        (count(*) filter (where located.is_return))::integer as return_events,
        min(located.occurred_at) filter (where located.is_start) as first_start_at,
        (array_agg(located.event_id order by located.occurred_at, located.event_id)
            filter (where located.is_start))[1] as first_start_event_id,
        min(located.recompute_from) as recompute_from

    from located
    group by
        located.retention_name,
        located.content_hash,
        located.anonymous_id,
        located.unit_id,
        located.period,
        located.time_zone,
        located.period_start,
        located.breakdown_value

),

final as (

    select
        retention_name,
        content_hash,
        anonymous_id,
        unit_id,
        period_index,
        period_start,
        period_started_at,
        breakdown_value,
        start_events,
        return_events,
        first_start_at,
        first_start_event_id,
        now() as derived_at,
        '{{ invocation_id }}'::text as invocation_id

    from cells
    where recompute_from is null or period_started_at >= recompute_from

)

select * from final
