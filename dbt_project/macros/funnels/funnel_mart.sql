{#-
    funnel_mart: the materialization of mart_funnel_conversion, a small table BI tools read.

    It recomputes exactly the (funnel, entry day) pairs whose facts changed: fct_funnel_entries
    queues them in `fct_funnel_entries__changes` (a row (null, null) means "everything"), and a
    run of this model, in one transaction holding a lock on the queue, deletes those days' rows,
    inserts them again from the facts and empties the queue. Config `changes_of`: the facts model.
    Created empty and filled with INSERT ... SELECT; a reference table on Citus (every node can
    join it; it has no device column to colocate on).
-#}
{% materialization funnel_mart, adapter='postgres' -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing = load_cached_relation(this) -%}
    {%- set changes = funnel_mart_changes_relation() -%}
    {%- set incremental = funnel_mart_incremental() -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- call statement('lock') -%}
        lock table {{ changes }} in exclusive mode
    {%- endcall -%}
    {%- if incremental %}
        {%- call statement('forget') -%}
            delete from {{ target_relation }} as mart
            where exists (select 1 from {{ changes }} where funnel_name is null)
                or exists (
                    select 1 from {{ changes }} as changed
                    where changed.funnel_name = mart.funnel_name
                        and changed.entry_day = mart.entry_day
                )
        {%- endcall -%}
    {%- else %}
        {%- if existing is not none -%}
            {{ adapter.drop_relation(existing) }}
        {%- endif -%}
        {%- call statement('create_empty') -%}
            {{ distributed_create_empty(target_relation, sql) }}
        {%- endcall -%}
        {%- call statement('reference') -%}
            select retrolytics.make_reference('{{ target_relation.include(database=false) }}'::regclass)
        {%- endcall -%}
    {%- endif %}
    {%- call statement('main') -%}
        {{ distributed_insert(target_relation, sql) }}
    {%- endcall -%}
    {%- call statement('consume') -%}
        delete from {{ changes }}
    {%- endcall -%}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {%- do persist_docs(target_relation, model) -%}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}
{%- endmaterialization %}


{% macro funnel_mart_changes_relation() -%}
    {{- return(funnel_side_tables(ref(config.require('changes_of'))).changes) -}}
{%- endmacro %}


{#- Incremental: the mart exists and this is no --full-refresh. The model asks the same. -#}
{% macro funnel_mart_incremental() -%}
    {%- if not execute or should_full_refresh() -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set table = adapter.get_relation(this.database, this.schema, this.identifier) -%}
    {{- return(table is not none and table.is_table) -}}
{%- endmacro %}
