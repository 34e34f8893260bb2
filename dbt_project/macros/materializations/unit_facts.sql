{#-
    unit_facts: the materialization of facts kept per analysis and unit (fct_funnel_entries_device,
    _user and _session; fct_paths).

    Like distributed_incremental (macros/retroactive.sql): the table is created EMPTY,
    distributed through the single Citus switch (on unit_id) and filled by the model's one
    INSERT ... SELECT, and a ledger (`<table>__versions`) remembers the analysis versions it holds.
    What a run recomputes is the model's business; this only removes, in the same transaction and
    holding a lock on the table, the rows the model replaces:

      - the rows of new, changed and removed versions (the model derives the new ones over all
        history);
      - with a window: each planned unit's rows from its point on (`recompute_from` of the plan,
        compared with the `replaced_from` column of the facts);
      - without a window: every row (a run over all history recomputes everything).

    Configs: versions_model, version_column (the analysis' name column, in the versions, the
    plan and the facts), plan_model, replaced_from. The first run (or --full-refresh) builds
    everything.
-#}
{% materialization unit_facts, adapter='postgres' -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing = load_cached_relation(this) -%}
    {%- set versions = ref(config.require('versions_model')) -%}
    {%- set version_column = config.require('version_column') -%}
    {%- set plan_model = config.require('plan_model') -%}
    {%- set incremental = retro_is_incremental() -%}
    {%- if unit_facts_planned() -%}
        {{ retro_require_plan(plan_model) }}
    {%- endif -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if incremental %}
        {%- call statement('forget') -%}
            lock table {{ target_relation }} in share row exclusive mode;
            {{ retro_forget_changed_versions(target_relation, versions, version_column) }};
            {% if unit_facts_planned() -%}
            delete from {{ target_relation }} as facts
            using {{ ref(plan_model) }} as plan
            where plan.{{ version_column }} = facts.{{ version_column }}
                and plan.unit_id = facts.unit_id
                and facts.{{ config.require('replaced_from') }} >= plan.recompute_from
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
            fail, the next run finds an empty ledger and derives every analysis again. -#}
        {{ adapter.commit() }}
    {%- endif %}

    {%- call statement('main') -%}
        {{ distributed_insert(target_relation, sql) }}
    {%- endcall -%}
    {%- if not incremental -%}
        {%- do create_indexes(target_relation) -%}
    {%- endif -%}

    {%- call statement('record_versions') -%}
        {{ retro_record_versions(target_relation, versions, version_column, 'content_hash') }}
    {%- endcall -%}

    {{ return(retro_finish(target_relation, post_hooks)) }}
{%- endmaterialization %}


{#- Does this run follow the recompute plan (an incremental run with a window)? The facts
    models ask the same, to read only the planned units. -#}
{% macro unit_facts_planned() -%}
    {{- return(retro_is_incremental() and retro_window() is not none) -}}
{%- endmacro %}
