{#-
    distributed_table: a table rebuilt whole by every run, distributed through the single Citus
    switch and colocated with raw.events (config `distributed_by`, default anonymous_id; a
    person-keyed table names its person column), like distributed_incremental never by CTAS.

    The first run (or --full-refresh) creates it empty, distributes it, commits, then fills it
    with INSERT ... SELECT. Later runs truncate and refill it in one transaction, so a reader
    waits for the new rows instead of seeing an empty table. Used for the sessions plan and the
    dimensions built from the sessions.
-#}
{% materialization distributed_table, adapter='postgres' -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing = load_cached_relation(this) -%}
    {%- set distributed_by = config.get('distributed_by', 'anonymous_id') -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if existing is not none and existing.is_table and not should_full_refresh() %}
        {%- call statement('empty') -%}
            truncate {{ target_relation }}
        {%- endcall -%}
        {%- call statement('main') -%}
            {{ distributed_insert(target_relation, sql) }}
        {%- endcall -%}
    {%- else %}
        {%- if existing is not none -%}
            {{ adapter.drop_relation(existing) }}
        {%- endif -%}
        {%- call statement('create_empty') -%}
            {{ distributed_create_empty(target_relation, sql) }}
        {%- endcall -%}
        {%- call statement('distribute') -%}
            select retrolytics.distribute(
                '{{ target_relation.include(database=false) }}'::regclass, '{{ distributed_by }}'
            )
        {%- endcall -%}
        {#- Citus refuses a parallel INSERT ... SELECT over shards created in the same
            transaction: commit the empty table first. -#}
        {{ adapter.commit() }}
        {%- call statement('main') -%}
            {{ distributed_insert(target_relation, sql) }}
        {%- endcall -%}
        {%- do create_indexes(target_relation) -%}
    {%- endif %}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {%- do persist_docs(target_relation, model) -%}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}
{%- endmaterialization %}
