{#-
    Models say which schema they belong to (staging, intermediate, marts). In the default target
    that name is used as it is, so BI tools find `marts.defined_events`. In any other target
    (the pull-request check's `scratch`) it is prefixed with the target's schema, e.g.
    `pr_42_marts`, so a check never touches production tables.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif target.name == 'default' -%}
        {{ custom_schema_name | trim }}
    {%- else -%}
        {{ target.schema }}_{{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
