{#-
    path_segments: the materialization of fct_paths.

    Like funnel_attempts: the table is created EMPTY, distributed on unit_id through the single
    Citus switch and filled by the model's one INSERT ... SELECT, and a ledger
    (`<table>__versions`) remembers the path versions (int_path_versions) it holds. In the same
    transaction, holding a lock on the table, it removes the rows the model replaces:

      - the rows of new, changed and removed path versions (the model derives the new ones over
        all history);
      - with a window: each planned unit's segments from its point on (int_paths_plan);
      - without a window: every row (a run over all history recomputes everything).
-#}
{% materialization path_segments, adapter='postgres' -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing = load_cached_relation(this) -%}
    {%- set versions = ref('int_path_versions') -%}
    {%- set incremental = retro_is_incremental() -%}
    {%- if incremental and retro_window() is not none -%}
        {{ retro_require_plan('int_paths_plan') }}
    {%- endif -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if incremental %}
        {%- call statement('forget') -%}
            lock table {{ target_relation }} in share row exclusive mode;
            delete from {{ target_relation }}
            where path_name in (
                select coalesce(current_version.path_name, derived.name)
                from {{ versions }} as current_version
                full join {{ retro_ledger_relation(target_relation) }} as derived
                    on derived.name = current_version.path_name
                where derived.content_hash is distinct from current_version.content_hash
            );
            {% if retro_window() is not none -%}
            delete from {{ target_relation }} as segments
            using {{ ref('int_paths_plan') }} as plan
            where segments.path_name = plan.path_name
                and segments.unit_id = plan.unit_id
                and segments.segment_start >= plan.recompute_from
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
        {#- Citus refuses a parallel INSERT ... SELECT over shards created in the same transaction. -#}
        {{ adapter.commit() }}
    {%- endif %}

    {%- call statement('main') -%}
        {{ distributed_insert(target_relation, sql) }}
    {%- endcall -%}
    {%- if not incremental -%}
        {%- do create_indexes(target_relation) -%}
    {%- endif -%}

    {%- call statement('record_versions') -%}
        {{ retro_record_versions(target_relation, versions, 'path_name', 'content_hash') }}
    {%- endcall -%}

    {{ return(distributed_finish(target_relation, post_hooks)) }}
{%- endmaterialization %}
