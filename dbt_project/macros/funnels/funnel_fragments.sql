{#-
    Fragments the funnel models share: column lists, predicates, and the lookups of the
    attempts tables' previous state. The logic lives in the models (models/intermediate/funnels,
    models/marts/funnels); these only spell out what would otherwise be written twice.
-#}


{#- The event columns the funnel models carry, from defined_events or stg_events. A union's legs
    list them first, anonymous_id second as in stg_events, to stay on the Citus shards
    (DEVELOPERS.md, "Keeping a model's statement on the shards"). -#}
{% macro funnel_event_columns(alias) -%}
    {{ alias }}.event_id,
    {{ alias }}.anonymous_id,
    {{ alias }}.occurred_at,
    {{ alias }}.user_id,
    {{ alias }}.properties,
    {{ alias }}.type,
    {{ alias }}.name,
    {{ alias }}.page_url,
    {{ alias }}.page_path,
    {{ alias }}.page_title,
    {{ alias }}.referrer,
    {{ alias }}.target_text,
    {{ alias }}.target_href,
    {#- stg_events extracts the UTM fields once; defined_events carries them. -#}
    {{ alias }}.utm_source,
    {{ alias }}.utm_medium,
    {{ alias }}.utm_campaign
{%- endmacro %}


{#- An event column (of funnel_event_columns) chosen by name, data from the seed, never SQL
    built from it. A searched CASE: Citus mis-plans `case x when ...` on the shards. -#}
{% macro funnel_breakdown_field(field, events) -%}
    case
    {%- for name in ['type', 'name', 'page_url', 'page_path', 'page_title', 'referrer',
                     'target_text', 'target_href', 'utm_source', 'utm_medium', 'utm_campaign'] %}
        when {{ field }} = '{{ name }}' then {{ events }}.{{ name }}
    {%- endfor %}
    end
{%- endmacro %}


{#- The position of an event in its unit's stream, as a row value to compare with. -#}
{% macro funnel_stream_key(alias) -%}
    ({{ alias }}.occurred_at, {{ alias }}.sort_step, {{ alias }}.event_id, {{ alias }}.anonymous_id collate "C")
{%- endmacro %}


{#- The plan's resume point (int_funnel_recompute_plan) as a row value of the same shape. -#}
{% macro funnel_resume_key(plan) -%}
    ({{ plan }}.resume_at, {{ plan }}.resume_step, {{ plan }}.resume_event_id, {{ plan }}.resume_anonymous_id collate "C")
{%- endmacro %}


{#- The attempts table of a unit, as built by an earlier run (none before the first). The plan
    reads it (and its ledger) to know where each unit's recomputation resumes: the feedback of an incremental
    model on itself, like dbt's {{ this }}, not an input in the lineage. -#}
{% macro funnel_attempts_relation(unit) -%}
    {%- if not execute -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set schema = generate_schema_name('marts', none) -%}
    {%- set table = adapter.get_relation(this.database, schema, 'fct_funnel_entries_' ~ unit) -%}
    {%- if table is none or adapter.get_relation(this.database, schema, table.identifier ~ '__versions') is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {{- return(table) -}}
{%- endmacro %}


{#- Column list: one unit's stream of one funnel as the parallel arrays funnel_walk() takes. -#}
{% macro funnel_stream_arrays(numbered) -%}
    array_agg({{ numbered }}.occurred_at order by {{ numbered }}.stream_position) as times,
    array_agg({{ numbered }}.step_mask order by {{ numbered }}.stream_position) as steps,
    array_agg({{ numbered }}.exclusion_mask order by {{ numbered }}.stream_position) as exclusions,
    array_agg({{ numbered }}.hold_group order by {{ numbered }}.stream_position) as holds,
    array_agg({{ numbered }}.event_id order by {{ numbered }}.stream_position) as event_ids,
    array_agg({{ numbered }}.anonymous_id order by {{ numbered }}.stream_position) as devices,
    array_agg({{ numbered }}.user_id order by {{ numbered }}.stream_position) as users,
    array_agg({{ numbered }}.context_breakdown order by {{ numbered }}.stream_position) as breakdowns
{%- endmacro %}


{#- The call of funnel_walk() on a stream (funnel_stream_arrays) of a funnel (int_funnels). -#}
{% macro funnel_walk_call(funnels, streams) -%}
    {{ funnel_walk_name() }}(
        {{ funnels }}.step_count,
        {{ funnels }}.order_mode,
        {{ funnels }}.conversion_window,
        {{ funnels }}.step_within,
        {{ funnels }}.exclusion_from,
        {{ funnels }}.exclusion_to,
        {{ funnels }}.attribution,
        {{ funnels }}.attribution_step,
        {{ streams }}.times,
        {{ streams }}.steps,
        {{ streams }}.exclusions,
        {{ streams }}.holds,
        {{ streams }}.event_ids,
        {{ streams }}.devices,
        {{ streams }}.users,
        {{ streams }}.breakdowns,
        {{ funnel_data_end() }},
        {{ funnels }}.entries,
        {{ funnels }}.exclusion_scope,
        {{ funnels }}.broken_by
    )
{%- endmacro %}


{#- SQL: the end of the data, a literal read when the model compiles: the latest occurred_at of
    the step events (int_funnel_step_events: every declared funnel's step and exclusion events;
    not the other events a `broken_by: any_event` stream holds, so declaring one moves no other
    funnel's end). An attempt alive at the end of its stream whose deadline is later is
    `in_progress`. -#}
{% macro funnel_data_end() -%}
    {%- if not execute -%}
        {{- return("null::timestamptz") -}}
    {%- endif -%}
    {#- In microseconds since the epoch: a number, which the query's result keeps exactly. -#}
    {%- set latest = run_query(
        "select (extract(epoch from max(occurred_at)) * 1000000)::bigint from "
        ~ ref('int_funnel_step_events')
        ~ " where step_mask <> 0 or exclusion_mask <> 0").columns[0].values()[0] -%}
    {%- if latest is none -%}
        null::timestamptz
    {%- else -%}
        {#- A typed literal, a constant: the walk's arguments must be immutable on Citus
            (DEVELOPERS.md, "Keeping a model's statement on the shards"). -#}
        {%- set utc_epoch = modules.datetime.datetime(1970, 1, 1, tzinfo=modules.pytz.utc) -%}
        timestamptz '{{ (utc_epoch + modules.datetime.timedelta(microseconds=latest | int)).isoformat() }}'
    {%- endif -%}
{%- endmacro %}


{#- Column list: a fact row (the contract of fct_funnel_entries) from a walked attempt (with its
    funnel's content_hash and unit), numbered
    from `first_attempt` (1, or the plan's first_attempt) on. -#}
{% macro funnel_attempt_columns(attempts, first_attempt, user_id) -%}
    {{ attempts }}.funnel_name,
    {{ attempts }}.content_hash,
    {{ attempts }}.unit,
    {{ attempts }}.unit_id,
    {{ user_id }} as user_id,
    {{ attempts }}.entry_device as anonymous_id,
    ({{ first_attempt }} + {{ attempts }}.ordinality - 1)::integer as attempt_number,
    {{ attempts }}.entry_event_id,
    {{ attempts }}.entered_at,
    ({{ attempts }}.entered_at at time zone 'UTC')::date as entry_day,
    {{ attempts }}.entry_step,
    {{ attempts }}.step_reached_at,
    {{ attempts }}.furthest_step,
    {{ attempts }}.outcome = 'converted' as converted,
    case when {{ attempts }}.outcome = 'converted' then {{ attempts }}.ended_at end as converted_at,
    case
        when {{ attempts }}.outcome = 'converted'
            then extract(epoch from {{ attempts }}.ended_at - {{ attempts }}.entered_at)::float8
    end as seconds_to_convert,
    {{ attempts }}.outcome,
    {{ attempts }}.ended_at,
    {{ attempts }}.deadline_at,
    {{ attempts }}.breakdown_value,
    now() as derived_at,
    '{{ invocation_id }}'::text as invocation_id
{%- endmacro %}


{#- SQL: the earliest resume point of the planned device units, a constant so that the scan of
    the step events is an index range (a literal read when the model compiles: Citus plans a
    scalar subquery apart and then pulls the INSERT to the coordinator). Usually the window
    start, or the entry of an attempt still open at it; but a unit whose identity or sessions
    changed, or of an `all_events` funnel, resumes at the beginning ('-infinity'), and an
    attempt whose deadline has passed at its entry. Device funnels only: the user attempts read
    their planned persons' devices instead. Without planned device units: the window start. -#}
{% macro funnel_plan_lower_bound() -%}
    {%- set earliest = run_query(
        "select min(resume_at)::text from " ~ ref('int_funnel_recompute_plan')
        ~ " where unit = 'device'").columns[0].values()[0] -%}
    '{{ earliest if earliest is not none else retro_window().since }}'::timestamptz
{%- endmacro %}


{#- What the streams of the funnels of `unit` need beyond the step events (from the seeds, when
    the model compiles): {'session': ..., 'person': ..., 'hold': ...}. An attempts model joins
    the sessions or the trait history only when one of its funnels breaks down by them, so the
    statements of the other funnels stay as they were (on Citus: on the shards); and it ranks
    the events' hold_constant values only when one of its funnels holds something constant (a
    second sort of every step event otherwise). -#}
{% macro funnel_stream_needs(unit) -%}
    {%- if not execute -%}
        {{- return({'session': false, 'person': false, 'hold': false}) -}}
    {%- endif -%}
    {%- set row = run_query(
        "select coalesce(bool_or(breakdown_session is not null), false),"
        ~ " coalesce(bool_or(breakdown_person is not null), false),"
        ~ " coalesce(bool_or(coalesce(jsonb_array_length(hold_constant), 0) > 0), false) from "
        ~ ref('int_funnels') ~ " where unit = '" ~ unit ~ "'").rows[0] -%}
    {{- return({'session': row[0], 'person': row[1], 'hold': row[2]}) -}}
{%- endmacro %}


{#- Joins: the session of each step event `step_events` (fct_sessions: same device, between the
    session's start and end) as `sessions`, when `with_session`; and, for person breakdowns,
    the event's person at its time (int_device_persons) and the trait the funnel breaks down by
    as it was then (dim_person_traits) as `traits`. `funnels` carries breakdown_person. -#}
{% macro funnel_context_joins(step_events, funnels, with_session, with_person) -%}
    {%- if with_session %}
    left join {{ ref('fct_sessions') }} as sessions
        on ({{ funnels }}.unit = 'session' or {{ funnels }}.breakdown_session is not null)
        and sessions.anonymous_id = {{ step_events }}.anonymous_id
        and {{ step_events }}.occurred_at >= sessions.session_start
        and {{ step_events }}.occurred_at <= sessions.session_end
    {%- endif %}
    {%- if with_person %}
    left join {{ ref('int_device_persons') }} as event_persons
        on {{ funnels }}.breakdown_person is not null
        and event_persons.anonymous_id = {{ step_events }}.anonymous_id
        and {{ step_events }}.occurred_at >= event_persons.valid_from
        and {{ step_events }}.occurred_at < event_persons.valid_until
    left join {{ ref('dim_person_traits') }} as traits
        on traits.person_id = event_persons.person_id
        and traits.trait = {{ funnels }}.breakdown_person
        and {{ step_events }}.occurred_at >= traits.valid_from
        and {{ step_events }}.occurred_at < traits.valid_to
    {%- endif %}
{%- endmacro %}


{#- An event's breakdown value in context (with funnel_context_joins): its session's column,
    its person's trait as text, or what int_funnel_step_events derived (field, property). -#}
{% macro funnel_context_breakdown(step_events, funnels, with_session, with_person) -%}
    {%- if not with_session and not with_person -%}
    {{ step_events }}.breakdown_value
    {%- else -%}
    case
        {%- if with_session %}
        {%- for name in ['landing_page', 'exit_page', 'referrer', 'referrer_host', 'utm_source',
                         'utm_medium', 'utm_campaign', 'browser_family', 'os_family',
                         'device_family'] %}
        when {{ funnels }}.breakdown_session = '{{ name }}' then sessions.{{ name }}
        {%- endfor %}
        {%- endif %}
        {%- if with_person %}
        when {{ funnels }}.breakdown_person is not null then traits.value #>> '{}'
        {%- endif %}
        else {{ step_events }}.breakdown_value
    end
    {%- endif -%}
{%- endmacro %}


{#- The walk, the same for every unit: each unit's stream in order (in_scope: the step events this
    run walks, with unit_id and context_breakdown), its arrays, funnel_walk() over them, and the
    attempt columns (`final`). `user_id`: the SQL of an attempt's user_id, from `attempts`;
    `holds`: whether a funnel of the unit holds something constant (funnel_stream_needs), else
    every event is in hold group 1. -#}
{% macro funnel_walk_ctes(user_id, holds) -%}
{%- set planned = unit_facts_planned() %}
-- Each unit's stream in order, and its hold_constant groups (equal groups, equal values).
numbered as (

    select
        in_scope.*,
        row_number() over (
            partition by unit_id, funnel_name
            order by occurred_at, sort_step, event_id, anonymous_id collate "C"
        ) as stream_position,
        {% if holds -%}
        dense_rank() over (partition by unit_id, funnel_name order by hold_values)::integer
        {%- else -%}
        1
        {%- endif %} as hold_group

    from in_scope

),

streams as (

    select funnel_name, unit_id, {{ funnel_stream_arrays('numbered') }}
    from numbered
    group by unit_id, funnel_name

),

attempts as (

    select
        streams.funnel_name,
        streams.unit_id,
        funnels.content_hash,
        funnels.unit,
        funnels.rebuilt,
        walk.*

    from streams
    inner join funnels on funnels.funnel_name = streams.funnel_name
    cross join lateral {{ funnel_walk_call('funnels', 'streams') }} with ordinality as walk

),

final as (

    select
        {{ funnel_attempt_columns(
            'attempts',
            'case when attempts.rebuilt then 1 else plan.first_attempt end' if planned else '1',
            user_id) }}

    from attempts
    {% if planned %}
    left join {{ ref('int_funnel_recompute_plan') }} as plan
        on plan.funnel_name = attempts.funnel_name
        and plan.unit_id = attempts.unit_id
    {% endif %}

)
{%- endmacro %}


{#- The breakdown group an attempt of `facts` counts in besides the overall `(all)`: its value
    (`(none)` for null), or null when it counts in the overall group only: its funnel (`funnels`)
    has no breakdown, the value is the text `(all)`, or it never filled the attribution step of
    a funnel with `unreached: leave_out`. -#}
{% macro funnel_breakdown_group(facts, funnels) -%}
    case
        when num_nonnulls({{ funnels }}.breakdown_field, {{ funnels }}.breakdown_property,
                {{ funnels }}.breakdown_session, {{ funnels }}.breakdown_person) = 0 then null
        when {{ facts }}.breakdown_value = '(all)' then null
        when {{ funnels }}.attribution_unreached = 'leave_out'
            and {{ facts }}.step_reached_at[{{ funnels }}.attribution_step] is null then null
        else coalesce({{ facts }}.breakdown_value, '(none)')
    end
{%- endmacro %}


{#- The funnel models' planner settings, for the model's transaction (`set local`; a table's
    first build commits before its insert, so only windowed runs of existing tables get them).
    A windowed run reads a few units, days or ranges of tables that grow with history: with
    random_page_cost 4 (a disk's) PostgreSQL read every stored attempt to find the changed
    days' facts (1.0 s at 90 days against 0.2 to 0.3 s by the facts' (funnel_name, entered_at)
    index; benchmarks/RESULTS.md section 4c). The warehouse's working set is in memory: 1.1, as
    for SSDs. On Citus the workers plan their shards' statements with their own settings. -#}
{% macro funnel_planner_settings() -%}
    set local random_page_cost = 1.1
{%- endmacro %}
