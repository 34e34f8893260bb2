{#-
    funnel_attempts: the materialization of fct_funnel_entries_device, _user and _session.

    Like distributed_incremental (macros/retroactive.sql): the table is created EMPTY,
    distributed through the single Citus switch (on unit_id, colocated with raw.events) and
    filled by the model's one INSERT ... SELECT, and a ledger (`<table>__versions`) remembers the
    funnel versions it holds. What a run recomputes is the model's business; this only removes,
    in the same transaction and holding a lock on the table, the rows the model replaces:

      - the rows of new, changed and removed funnel versions (the model derives the new ones
        over all history);
      - with a window: the planned units' attempts that ended at or after their point
        (int_funnel_recompute_plan, predicate funnel_replaced_by_plan);
      - without a window: every row (a run over all history recomputes everything).

    The first run (or --full-refresh) builds everything.
-#}
{% materialization funnel_attempts, adapter='postgres' -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing = load_cached_relation(this) -%}
    {%- set versions = ref('int_funnel_versions') -%}
    {%- set incremental = retro_is_incremental() -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if incremental %}
        {%- call statement('forget') -%}
            lock table {{ target_relation }} in share row exclusive mode;
            delete from {{ target_relation }}
            where funnel_name in ({{ funnel_changed_versions(target_relation, versions) }});
            {% if funnel_attempts_planned() -%}
            delete from {{ target_relation }} as facts
            using {{ ref('int_funnel_recompute_plan') }} as plan
            where {{ funnel_replaced_by_plan('facts', 'plan') }}
            {%- else -%}
            delete from {{ target_relation }}
            {%- endif %}
        {%- endcall -%}
    {%- else %}
        {%- if existing is not none -%}
            {{ adapter.drop_relation(existing) }}
        {%- endif -%}
        {%- call statement('create_empty') -%}
            {{ distributed_create_empty(target_relation, sql) }};
            select retrolytics.distribute('{{ target_relation.include(database=false) }}'::regclass, 'unit_id');
            {{ retro_create_ledger(target_relation) }}
        {%- endcall -%}
        {#- Commit the empty, distributed tables before filling them: Citus refuses a parallel
            INSERT ... SELECT over shards created in the same transaction. Should the insert
            fail, the next run finds an empty ledger and derives every funnel again. -#}
        {{ adapter.commit() }}
    {%- endif %}

    {%- call statement('main') -%}
        {{ distributed_insert(target_relation, sql) }}
    {%- endcall -%}
    {%- if not incremental -%}
        {%- do create_indexes(target_relation) -%}
    {%- endif -%}

    {%- call statement('record_versions') -%}
        {{ retro_record_versions(target_relation, versions, 'funnel_name', 'content_hash') }}
    {%- endcall -%}

    {{ return(distributed_finish(target_relation, post_hooks)) }}
{%- endmaterialization %}


{#- Does this run follow the recompute plan (an incremental run with a window)? The attempts
    models ask the same. -#}
{% macro funnel_attempts_planned() -%}
    {{- return(retro_is_incremental() and retro_window() is not none) -}}
{%- endmacro %}
