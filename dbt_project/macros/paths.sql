{#- SQL: a timestamptz literal no finite point of the paths plan lies before; read when
    fct_paths compiles, after the plan was written in the same run, so PostgreSQL prunes the
    older daily partitions at plan time ('infinity' when the plan has no finite point). -#}
{% macro paths_plan_lower_bound() -%}
    {%- if not execute -%}
        {{- return("'-infinity'::timestamptz") -}}
    {%- endif -%}
    {%- set earliest = run_query(
        "select coalesce(min(recompute_from), 'infinity')::text from " ~ ref('int_paths_plan')
        ~ " where recompute_from > '-infinity'").columns[0].values()[0] -%}
    '{{ earliest }}'::timestamptz
{%- endmacro %}
