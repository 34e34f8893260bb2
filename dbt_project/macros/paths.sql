{#- SQL: a timestamptz literal no point of the paths plan lies before, but those planned for a
    moved identity (fct_paths reads their devices one by one); read when
    fct_paths compiles, after the plan was written in the same run, so PostgreSQL prunes the
    older daily partitions at plan time ('infinity' when it has no such point). -#}
{% macro paths_plan_lower_bound() -%}
    {%- if not execute -%}
        {{- return("'-infinity'::timestamptz") -}}
    {%- endif -%}
    {%- set earliest = run_query(
        "select coalesce(min(recompute_from), 'infinity')::text from " ~ ref('int_paths_plan')
        ~ " where not identity_changed").columns[0].values()[0] -%}
    '{{ earliest }}'::timestamptz
{%- endmacro %}
