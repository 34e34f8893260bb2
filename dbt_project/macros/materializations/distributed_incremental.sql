{#-
    distributed_incremental: a table distributed on anonymous_id (colocated with raw.events)
    that is created EMPTY and filled with INSERT ... SELECT, then kept up to date by windowed,
    retroactive runs (macros/retroactive.sql says exactly what a run recomputes).

    Never CTAS: on Citus a CREATE TABLE AS result would be computed on the coordinator. The table
    is created from the model's contract (columns, types, constraints) when it enforces one, else
    with `create table ... as (...) with no data`; `retrolytics.distribute()` is the single Citus
    switch and a no-op on plain PostgreSQL.

    Configs: time_column, version_column, hash_column, versions_model, and optionally
    plan_model (see retroactive.sql), plus dbt's `indexes` and `contract`.

    incremental_strategy says how a windowed run writes the window of the unchanged
    declarations:
      delete+insert   (the default) forget the window's rows, then insert the window again;
      insert_missing  keep them and insert only the rows whose `unique_key` (a list of columns)
                      the table lacks. For a model whose row is a function of one immutable
                      event and its declaration's version (defined_events): a row the window
                      already holds would be written again unchanged, so a rerun writes nothing
                      and a daily run writes its new day, not the lookback too
                      (benchmarks/RESULTS.md, section 3). In a window, rows leave such a
                      table only with their declaration (step 1) or by erasure
                      (ingestion/erasure.py); a run without a window replaces them all.
-#}
{% materialization distributed_incremental, adapter='postgres' -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing = load_cached_relation(this) -%}
    {%- set versions = ref(config.require('versions_model')) -%}
    {%- set version_column = config.require('version_column') -%}
    {%- set hash_column = config.require('hash_column') -%}
    {%- set time_column = config.require('time_column') -%}
    {%- set incremental = retro_is_incremental() -%}
    {%- set plan = ref(config.get('plan_model')) if config.get('plan_model') else none -%}
    {%- set missing_key = retro_missing_key(plan) -%}
    {%- if plan is not none and incremental and retro_window() is not none -%}
        {{ retro_require_plan(config.get('plan_model')) }}
    {%- endif -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if incremental %}
        {#- Runs of this model take turns: each one's plan must see the previous one's ledger. -#}
        {%- call statement('lock') -%}
            lock table {{ target_relation }} in share row exclusive mode
        {%- endcall -%}
        {%- call statement('forget') -%}
            {{ retro_forget(
                target_relation, versions, version_column, hash_column, time_column, plan,
                keep_window=missing_key is not none) }}
        {%- endcall -%}
        {%- call statement('main') -%}
            {%- if missing_key is none %}
            {{ distributed_insert(target_relation, sql) }}
            {%- else %}
            {{ retro_insert_missing(target_relation, sql, missing_key, time_column) }}
            {%- endif %}
        {%- endcall -%}
    {%- else %}
        {%- if existing is not none -%}
            {{ adapter.drop_relation(existing) }}
        {%- endif -%}
        {%- call statement('create_empty') -%}
            {{ distributed_create_empty(target_relation, sql) }}
        {%- endcall -%}
        {%- call statement('distribute') -%}
            select retrolytics.distribute('{{ target_relation.include(database=false) }}'::regclass)
        {%- endcall -%}
        {%- call statement('create_ledger') -%}
            {{ retro_create_ledger(target_relation) }}
        {%- endcall -%}
        {#- Commit the empty, distributed table before filling it: Citus refuses a parallel
            INSERT ... SELECT over shards created in the same transaction. Should the insert
            fail, the next run finds an empty ledger and derives every definition again. -#}
        {{ adapter.commit() }}
        {%- call statement('main') -%}
            {{ distributed_insert(target_relation, sql) }}
        {%- endcall -%}
        {%- do create_indexes(target_relation) -%}
    {%- endif %}

    {%- call statement('record_versions') -%}
        {{ retro_record_versions(target_relation, versions, version_column, hash_column) }}
    {%- endcall -%}

    {{ return(retro_finish(target_relation, post_hooks)) }}
{%- endmaterialization %}


{#- The ending every materialization of this project shares: the post-hooks that run inside the
    transaction, the docs, the commit, the hooks that run after it; returns the relations. -#}
{% macro distributed_finish(relation, post_hooks) -%}
    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {%- do persist_docs(relation, model) -%}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [relation]}) }}
{%- endmacro %}


{% macro distributed_create_empty(relation, sql) -%}
    {%- if config.get('contract').enforced -%}
        {{ get_assert_columns_equivalent(sql) }}
        create table {{ relation }} {{ get_table_columns_and_constraints() }}
    {%- else -%}
        create table {{ relation }} as (
            {{ sql }}
        ) with no data
    {%- endif -%}
{%- endmacro %}


{% macro distributed_insert(relation, sql) -%}
    {%- if config.get('contract').enforced -%}
        insert into {{ relation }} ({{ adapter.dispatch('get_column_names', 'dbt')() }})
        {{ get_select_subquery(sql) }}
    {%- else -%}
        insert into {{ relation }}
        select * from (
            {{ sql }}
        ) as model_subq
    {%- endif -%}
{%- endmacro %}


{#- The unique_key whose missing rows an `insert_missing` run inserts; none for delete+insert and
    for a run without a window. Checks the strategy on every run. -#}
{% macro retro_missing_key(plan) -%}
    {%- set strategy = config.get('incremental_strategy') or 'delete+insert' -%}
    {%- if strategy == 'delete+insert' -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set key = config.get('unique_key') -%}
    {%- if strategy != 'insert_missing' -%}
        {{- exceptions.raise_compiler_error(
            this.identifier ~ ": incremental_strategy must be 'delete+insert' or 'insert_missing'; got '"
            ~ strategy ~ "'") -}}
    {%- elif key is string or not key or plan is not none -%}
        {{- exceptions.raise_compiler_error(
            this.identifier ~ ": incremental_strategy 'insert_missing' needs a unique_key list of "
            ~ "columns and no plan_model (a plan's rows change; they are deleted and derived again)") -}}
    {%- endif -%}
    {#- A run over all history (no window) replaces every row whatever the strategy: it is how
        rows whose raw events are gone (other than by erasure, which deletes them too) leave. -#}
    {{- return(key if retro_window() is not none else none) -}}
{%- endmacro %}


{#- Insert the model's rows whose key the table lacks. An anti-join by LEFT JOIN on the whole key,
    distribution column included, so on Citus each shard compares with its own rows (Citus
    refuses a correlated NOT EXISTS over a subquery). The window bounds the rows compared:
    outside it this run inserts only new and changed declarations' rows, whose old rows step 1
    deleted. -#}
{% macro retro_insert_missing(relation, sql, key, time_column) -%}
    {%- set columns = adapter.get_columns_in_relation(relation) | map(attribute='name') | list -%}
    insert into {{ relation }} ({{ columns | join(', ') }})
    select {% for column in columns %}model_subq.{{ column }}{% if not loop.last %}, {% endif %}{% endfor %}
    from (
        {{ sql }}
    ) as model_subq
    left join {{ relation }} as present
        on {{ retro_in_window('present.' ~ time_column) }}
        {%- for column in key %}
        and present.{{ column }} = model_subq.{{ column }}
        {%- endfor %}
    where present.{{ key[0] }} is null
{%- endmacro %}


{#- A windowed run follows the plan written earlier in the same invocation; a plan left by an
    earlier run would silently miss this window's events, so refuse to run without it. -#}
{% macro retro_require_plan(plan_model) -%}
    {%- set plan_id = 'model.' ~ project_name ~ '.' ~ plan_model -%}
    {%- if plan_id not in selected_resources -%}
        {{ exceptions.raise_compiler_error(
            this.identifier ~ ": a windowed run needs its plan " ~ plan_model ~ " built in the same "
            ~ "invocation; select it too, e.g. --select " ~ plan_model ~ "+") }}
    {%- endif -%}
{%- endmacro %}
