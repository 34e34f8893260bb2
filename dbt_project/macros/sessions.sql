{#- The inactivity that ends a session, as an SQL interval: the dbt var
    `session_timeout_minutes` (dbt_project.yml) is the one place it is set. -#}
{% macro session_timeout() -%}
    {%- set minutes = var('session_timeout_minutes') | string | trim -%}
    {%- if not modules.re.fullmatch('[0-9]+(\\.[0-9]+)?', minutes) or (minutes | float) <= 0 -%}
        {{- exceptions.raise_compiler_error(
            "The var 'session_timeout_minutes' must be a number of minutes > 0; got '" ~ minutes ~ "'") -}}
    {%- endif -%}
    interval '{{ minutes }} minutes'
{%- endmacro %}


{#- The relation a model builds, found by name without ref(): the sessions plan reads what the
    previous run of fct_sessions stored, which must not make fct_sessions run before the plan.
    None when that table does not exist yet. -#}
{% macro stored_relation_of(model_name) -%}
    {%- if not execute -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model' and node.name == model_name -%}
            {{- return(adapter.get_relation(node.database, node.schema, node.alias)) -}}
        {%- endif -%}
    {%- endfor -%}
    {{- exceptions.raise_compiler_error("stored_relation_of: no model named " ~ model_name) -}}
{%- endmacro %}


{#- SQL: a timestamptz literal no range of the sessions plan (devices that did not identify)
    starts before; read when fct_sessions compiles, after the plan was written in the same run.
    A constant lets PostgreSQL (and Citus, on the shards) skip older partitions at plan time. -#}
{% macro sessions_plan_lower_bound() -%}
    {%- if not execute -%}
        {{- return("'-infinity'::timestamptz") -}}
    {%- endif -%}
    {%- set earliest = run_query(
        "select coalesce(min(recompute_from), 'infinity')::text from " ~ ref('int_sessions_plan')
        ~ " where not identity_changed").columns[0].values()[0] -%}
    '{{ earliest }}'::timestamptz
{%- endmacro %}
