{#-
    funnel_mart: the materialization of mart_funnel_conversion, a small table BI tools read.
    Created empty and filled by the model's one INSERT ... SELECT; a reference table on Citus
    (every node can join it; it has no device column to colocate on).

    A windowed run (the mart exists, vars start/end given) first deletes the groups the model
    recomputes (predicate funnel_mart_recomputed): the (funnel, entry day) pairs of
    int_funnel_changed_days, and every row of a funnel whose version is not the current one
    (edited or removed funnels). Without a window the mart is rebuilt.
-#}
{% materialization funnel_mart, adapter='postgres' -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing = load_cached_relation(this) -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if funnel_mart_incremental() %}
        {%- call statement('forget') -%}
            lock table {{ target_relation }} in exclusive mode;
            delete from {{ target_relation }} as mart
            where {{ funnel_mart_recomputed('mart') }}
                or not exists (
                    select 1 from {{ ref('int_funnel_versions') }} as versions
                    where versions.funnel_name = mart.funnel_name
                        and versions.content_hash = mart.content_hash
                )
        {%- endcall -%}
    {%- else %}
        {%- if existing is not none -%}
            {{ adapter.drop_relation(existing) }}
        {%- endif -%}
        {%- call statement('create_empty') -%}
            {{ distributed_create_empty(target_relation, sql) }};
            select retrolytics.make_reference('{{ target_relation.include(database=false) }}'::regclass)
        {%- endcall -%}
    {%- endif %}
    {%- call statement('main') -%}
        {{ distributed_insert(target_relation, sql) }}
    {%- endcall -%}

    {{ return(distributed_finish(target_relation, post_hooks)) }}
{%- endmaterialization %}


{#- Incremental: the mart exists, this is no --full-refresh, and the run has a window. -#}
{% macro funnel_mart_incremental() -%}
    {{- return(distributed_table_exists() and retro_window() is not none) -}}
{%- endmacro %}


{#- Predicate: does this run recompute the group of the row `alias` (a fact or a mart row)? Its
    (funnel, day) changed in the facts (int_funnel_changed_days). -#}
{% macro funnel_mart_recomputed(alias) -%}
    exists (
        select 1 from {{ ref('int_funnel_changed_days') }} as changed
        where changed.funnel_name = {{ alias }}.funnel_name
            and changed.entry_day = {{ alias }}.entry_day
    )
{%- endmacro %}
