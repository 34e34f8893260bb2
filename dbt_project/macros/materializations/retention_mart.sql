{#-
    retention_mart: the materialization of mart_retention, a small table BI tools read. Created
    empty and filled by the model's one INSERT ... SELECT; a reference table on Citus. Its ledger
    (`mart_retention__versions`, macros/retroactive.sql) records the retention versions it holds.

    A windowed run (the mart and its ledger exist, vars start/end given) first deletes the groups
    the model recomputes: every row of a retention whose version differs from the ledger's
    (edited, new, removed), and the (retention, cohort period) pairs of
    int_retention_changed_cohorts. Without a window the mart is rebuilt.
-#}
{% materialization retention_mart, adapter='postgres' -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing = load_cached_relation(this) -%}
    {%- set versions = ref('int_retention_versions') -%}
    {%- set incremental = retention_mart_incremental() -%}
    {%- if incremental -%}
        {{ retro_require_plan('int_retention_replaced_cells') }}
        {{ retro_require_plan('int_retention_changed_cohorts') }}
    {%- endif -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if incremental %}
        {%- call statement('forget') -%}
            lock table {{ target_relation }} in exclusive mode;
            {{ retro_forget_changed_versions(target_relation, versions, 'retention_name') }};
            delete from {{ target_relation }} as mart
            using {{ ref('int_retention_changed_cohorts') }} as changed
            where changed.retention_name = mart.retention_name
                and changed.cohort_period = mart.cohort_period
        {%- endcall -%}
    {%- else %}
        {%- if existing is not none -%}
            {{ adapter.drop_relation(existing) }}
        {%- endif -%}
        {%- call statement('create_empty') -%}
            {{ distributed_create_empty(target_relation, sql) }};
            select retrolytics.make_reference('{{ target_relation.include(database=false) }}'::regclass);
            {{ retro_create_ledger(target_relation) }}
        {%- endcall -%}
        {%- do create_indexes(target_relation) -%}
    {%- endif %}
    {%- call statement('main') -%}
        {{ distributed_insert(target_relation, sql) }}
    {%- endcall -%}
    {%- call statement('record_versions') -%}
        {{ retro_record_versions(target_relation, versions, 'retention_name', 'content_hash') }}
    {%- endcall -%}

    {{ return(retro_finish(target_relation, post_hooks)) }}
{%- endmaterialization %}


{#- Incremental: the mart and its ledger exist, this is no --full-refresh, and the run has a
    window. -#}
{% macro retention_mart_incremental() -%}
    {{- return(retro_is_incremental() and retro_window() is not none) -}}
{%- endmacro %}
