{#-
    The period an instant falls in, on the wall clock of a retention's time zone: the one place
    that says it in SQL (retrolytics/semantics/retention.py `period_of` says it in Python).
    `rules` is a relation alias with the columns period, week_start and time_zone (stg_retentions).
    Searched CASEs: Citus mis-plans `case x when ...` on the shards.
-#}

{#- The local (timestamp without time zone) start of the period holding `moment`. -#}
{% macro retention_period_start(moment, rules) -%}
    case
        when {{ rules }}.period = 'hour'
            then date_trunc('hour', {{ moment }} at time zone {{ rules }}.time_zone)
        when {{ rules }}.period = 'day'
            then date_trunc('day', {{ moment }} at time zone {{ rules }}.time_zone)
        when {{ rules }}.period = 'week' and {{ rules }}.week_start = 'sunday'
            -- date_trunc's weeks start on Monday: shift Sunday onto the next Monday and back.
            then date_trunc('week', ({{ moment }} at time zone {{ rules }}.time_zone) + interval '1 day')
                - interval '1 day'
        when {{ rules }}.period = 'week'
            then date_trunc('week', {{ moment }} at time zone {{ rules }}.time_zone)
        else date_trunc('month', {{ moment }} at time zone {{ rules }}.time_zone)
    end
{%- endmacro %}


{#- The period's number (hours, days or weeks since 1970, or months since year 0) from its local
    start: offsets are differences of these. Weeks count from Monday 1970-01-05, floored. -#}
{% macro retention_period_index(local_start, rules) -%}
    case
        when {{ rules }}.period = 'hour'
            then floor(extract(epoch from {{ local_start }}) / 3600)::bigint
        when {{ rules }}.period = 'day'
            then ({{ local_start }}::date - date '1970-01-01')::bigint
        when {{ rules }}.period = 'week'
            then floor(({{ local_start }}::date - date '1970-01-05') / 7.0)::bigint
        else (extract(year from {{ local_start }}) * 12 + extract(month from {{ local_start }}) - 1)::bigint
    end
{%- endmacro %}


{#- The local start of the period numbered `period_index` (retention_period_index's inverse):
    the cohort_period of a cohort the mart recomputes, known only by its number. -#}
{% macro retention_index_start(period_index, rules) -%}
    case
        when {{ rules }}.period = 'hour'
            then timestamp '1970-01-01' + {{ period_index }} * interval '1 hour'
        when {{ rules }}.period = 'day'
            then timestamp '1970-01-01' + {{ period_index }} * interval '1 day'
        when {{ rules }}.period = 'week' and {{ rules }}.week_start = 'sunday'
            then timestamp '1970-01-11' + {{ period_index }} * interval '7 days'
        when {{ rules }}.period = 'week'
            then timestamp '1970-01-05' + {{ period_index }} * interval '7 days'
        else make_timestamp(
            ({{ period_index }} / 12)::integer, ({{ period_index }} % 12)::integer + 1, 1, 0, 0, 0
        )
    end
{%- endmacro %}


{#- Which context breakdowns the declared retention analyses use (read from the seed when the
    model compiles): {'session': ..., 'person': ...}. The facts join the sessions or the trait
    history, and the plan reads what changes them, only when an analysis needs it. -#}
{% macro retention_breakdown_needs() -%}
    {%- if not execute -%}
        {{- return({'session': false, 'person': false}) -}}
    {%- endif -%}
    {%- set row = run_query(
        "select coalesce(bool_or(breakdown_session is not null), false),"
        ~ " coalesce(bool_or(breakdown_person is not null), false) from "
        ~ ref('stg_retentions')).rows[0] -%}
    {{- return({'session': row[0], 'person': row[1]}) -}}
{%- endmacro %}


{#- A retention table of the marts schema as an earlier run left it, with its ledger (none before
    the first run). The models that list what a windowed run changes read the facts before they
    are replaced and the mart before it is updated: the feedback of an incremental model, like
    dbt's {{ this }} (funnel_attempts_relation does it for the funnels), not an input. -#}
{% macro retention_previous_relation(identifier) -%}
    {%- if not execute -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set schema = generate_schema_name('marts', none) -%}
    {%- set table = adapter.get_relation(this.database, schema, identifier) -%}
    {%- if table is none or adapter.get_relation(this.database, schema, identifier ~ '__versions') is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {{- return(table) -}}
{%- endmacro %}
