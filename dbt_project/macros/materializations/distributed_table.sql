{#-
    distributed_table: a table rebuilt by each run (or, with `append: true`, added to), created
    EMPTY from the model's contract and distributed through the single Citus switch, then filled
    by the model's one INSERT ... SELECT, then analyzed. Only DDL, distribution and statistics
    here: what the rows are is the model's SQL.

    Configs: distributed_by (the distribution column, colocated with raw.events; default
    anonymous_id), reference (true: a reference table instead, a copy on every node, for a
    small table that other models join on another column than the device), append (keep the
    rows of earlier runs; the model reads them as {{ this }} when distributed_table_exists()
    says so), plus dbt's `indexes` and `contract`.
    `--full-refresh` creates the table anew.
-#}
{% materialization distributed_table, adapter='postgres' -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing = load_cached_relation(this) -%}
    {%- set reuse = distributed_table_exists() -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if reuse %}
        {%- call statement('lock') -%}
            lock table {{ target_relation }} in share row exclusive mode
        {%- endcall -%}
        {%- if not config.get('append', false) %}
            {%- call statement('empty') -%}
                delete from {{ target_relation }}
            {%- endcall -%}
        {%- endif %}
    {%- else %}
        {%- if existing is not none -%}
            {{ adapter.drop_relation(existing) }}
        {%- endif -%}
        {%- call statement('create_empty') -%}
            {{ distributed_create_empty(target_relation, sql) }}
        {%- endcall -%}
        {%- call statement('distribute') -%}
            {%- if config.get('reference', false) %}
            select retrolytics.make_reference('{{ target_relation.include(database=false) }}'::regclass)
            {%- else %}
            select retrolytics.distribute('{{ target_relation.include(database=false) }}'::regclass, '{{ config.get('distributed_by', 'anonymous_id') }}')
            {%- endif %}
        {%- endcall -%}
        {%- do create_indexes(target_relation) -%}
        {#- Citus refuses a parallel INSERT ... SELECT over shards created in the same transaction. -#}
        {{ adapter.commit() }}
    {%- endif %}

    {%- call statement('main') -%}
        {{ distributed_insert(target_relation, sql) }}
    {%- endcall -%}

    {%- set result = distributed_finish(target_relation, post_hooks) -%}
    {#- Rewritten whole (or appended to) by every run, so its statistics describe the previous
        run's rows, often none (a windowed plan is empty after a full build), and the next model
        is planned before autovacuum comes by. Planned as near empty, the 8,000 devices of an
        hourly paths plan were nested-loop joined: fct_paths took 50 s instead of 2
        (benchmarks/RESULTS.md, 4c). After the commit, as an after_commit hook runs. -#}
    {%- call statement('analyze', auto_begin=False) -%}
        analyze {{ target_relation }}
    {%- endcall -%}
    {{ return(result) }}
{%- endmaterialization %}


{#- Does the model's table exist from an earlier run (and is this no --full-refresh)? -#}
{% macro distributed_table_exists() -%}
    {%- if not execute or should_full_refresh() -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set table = adapter.get_relation(this.database, this.schema, this.identifier) -%}
    {{- return(table is not none and table.is_table) -}}
{%- endmacro %}
