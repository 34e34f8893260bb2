{#-
    Retroactive, windowed derivation: the one place that decides what a run of a model
    materialized as `distributed_incremental` recomputes and what it deletes first.

    A model derived from *versioned* declarations (event definitions; funnels later) names
      version_column  the declaration's name in the model's rows (definition_name),
      hash_column     its content hash (content_hash),
      versions_model  a model with one row per current declaration: version_column, hash_column,
      time_column     the event time the partition window applies to (occurred_at).
    Next to the table lives a ledger, `<table>__versions` (name, content_hash, derived_at,
    invocation_id): the declarations the table holds, as of its last run. Each run, in one
    transaction that holds a lock on the table against concurrent runs:

      1. declarations whose hash differs from the ledger's (changed, new, removed) lose every
         row they have;
      2. the others lose their rows inside the window [start - lookback_hours, end) (with
         incremental_strategy insert_missing they keep them, and step 3 inserts only the rows
         the table lacks; see the materialization);
      3. changed and new declarations are derived over ALL history, the others over the window
         (the model asks `retro_ledger_join()`, `retro_is_derived()`, `retro_is_new()` which is which, and
         `retro_in_window()` for the window);
      4. the ledger becomes the current versions.

    A model whose rows depend on more than the window's events (a session spans the window's
    edges, and a late event may merge two sessions) names a `plan_model` instead: a table with
    one row per device to recompute, `anonymous_id`, `recompute_from`, `recompute_until`
    (inclusive), written earlier in the same run. Step 2 then forgets those devices' rows whose
    time_column lies in that range, and the model derives exactly that range again.

    So rerunning a window changes nothing, a new or edited declaration is re-derived over all
    history and only it, and a removed one disappears. Without a window
    (vars `start` and `end`, or the variables of retro_window_env) the run is all history. The first run (or --full-refresh) builds everything from scratch.
    The ledger exists so a declaration that matches nothing is not re-derived on every run.
-#}


{% macro retro_timestamp(name) -%}
    {%- set raw = var(name, none) -%}
    {%- if raw is none -%}
        {%- set raw = env_var(retro_window_env(name), '') -%}
    {%- endif -%}
    {%- if raw is none or (raw | string | trim) == '' -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set text = raw | string | trim -%}
    {%- set iso = '[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,6})?)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?' -%}
    {%- if not modules.re.fullmatch(iso, text) -%}
        {{- exceptions.raise_compiler_error(
            "The window's " ~ name ~ " (var '" ~ name ~ "' or " ~ retro_window_env(name)
            ~ ") must be an ISO 8601 timestamp such as "
            ~ "2026-11-20T00:00:00Z; got '" ~ text ~ "'") -}}
    {%- endif -%}
    {%- set moment = modules.datetime.datetime.fromisoformat(text.replace('Z', '+00:00')) -%}
    {%- if moment.tzinfo is none -%}
        {%- set moment = modules.pytz.utc.localize(moment) -%}
    {%- endif -%}
    {{- return(moment) -}}
{%- endmacro %}


{#-
    The window's environment variable (RETROLYTICS_WINDOW_START, _END, _LOOKBACK_HOURS): how
    Dagster and `retrolytics` pass it, because a changed `--vars` makes dbt parse the whole
    project again while a changed environment variable re-parses only the models that read it.
    `--vars` still wins when given.
-#}
{% macro retro_window_env(name) -%}
    {{- return('RETROLYTICS_WINDOW_' ~ (name | upper)) -}}
{%- endmacro %}


{#- none (all history), or {'since': iso text, 'end': iso text} with the lookback applied. -#}
{% macro retro_window() -%}
    {%- set start = retro_timestamp('start') -%}
    {%- set end = retro_timestamp('end') -%}
    {%- if start is none and end is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- if start is none or end is none -%}
        {{- exceptions.raise_compiler_error(
            "Give both the window's start and end (vars 'start' and 'end', or "
            ~ retro_window_env('start') ~ " and " ~ retro_window_env('end')
            ~ "), or neither for all history") -}}
    {%- endif -%}
    {%- if start >= end -%}
        {{- exceptions.raise_compiler_error(
            "The window is empty: start " ~ start.isoformat() ~ " is not before end " ~ end.isoformat()) -}}
    {%- endif -%}
    {%- set lookback = var('lookback_hours', none) -%}
    {%- if lookback is none -%}
        {%- set lookback = env_var(retro_window_env('lookback_hours'), '0') -%}
    {%- endif -%}
    {%- set lookback = lookback | string | trim -%}
    {%- if not modules.re.fullmatch('[0-9]+(\\.[0-9]+)?', lookback) -%}
        {{- exceptions.raise_compiler_error(
            "The window's lookback_hours (var 'lookback_hours' or "
            ~ retro_window_env('lookback_hours') ~ ") must be a number of hours >= 0; got '"
            ~ lookback ~ "'") -}}
    {%- endif -%}
    {%- set since = start - modules.datetime.timedelta(hours=(lookback | float)) -%}
    {{- return({'since': since.isoformat(), 'end': end.isoformat()}) -}}
{%- endmacro %}


{#- SQL: is `column` inside this run's window (true when the window is all history)? -#}
{% macro retro_in_window(column) -%}
    {%- set window = retro_window() -%}
    {%- if window is none -%}
        true
    {%- else -%}
        ({{ column }} >= '{{ window.since }}'::timestamptz and {{ column }} < '{{ window.end }}'::timestamptz)
    {%- endif -%}
{%- endmacro %}


{% macro retro_ledger_relation(relation) -%}
    {{- return(relation.incorporate(path={'identifier': relation.identifier ~ '__versions'}, type='table')) -}}
{%- endmacro %}


{#- Does this run add to an existing table (true) or build it from scratch (false)? -#}
{% macro retro_is_incremental() -%}
    {%- if not execute or should_full_refresh() -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set table = adapter.get_relation(this.database, this.schema, this.identifier) -%}
    {%- set ledger = adapter.get_relation(this.database, this.schema, this.identifier ~ '__versions') -%}
    {{- return(table is not none and table.is_table and ledger is not none) -}}
{%- endmacro %}


{#-
    Which current declarations are already in the table with their current hash (derived: only
    the window to redo) and which are not (new or changed: all history). Use as
        from <current declarations> as d {{ retro_ledger_join('d.name') }}
        where {{ retro_is_derived('d.hash') }}
    and
        from <current declarations> as d {{ retro_ledger_join('d.name', 'd.hash') }}
        where {{ retro_is_new() }}
    A join, not a correlated subquery: Citus pushes joins with reference tables down to the
    shards, but plans a correlated subquery separately and then cannot push the INSERT down.
    Two forms, for PostgreSQL's estimates (benchmarks/RESULTS.md, section 3): joined on name and
    hash, it multiplies their selectivities as if independent and expects one derived
    declaration of hundreds (then scans the window once per declaration instead of probing an
    index), so the derived ones are joined on the name and compare the hash in a coalesce
    (estimated at half); the new ones are an anti-join on both, which PostgreSQL does first and
    expects few of, so each is probed for over all history instead of reading it. After a join
    on name and hash, `retro_is_derived()` without a column tells the two apart in one select
    (the funnel and session models do).
-#}
{% macro retro_ledger_join(name_column, hash_column=none) -%}
    {%- if retro_is_incremental() -%}
        left join {{ retro_ledger_relation(this) }} as retro_ledger
            on retro_ledger.name = {{ name_column }}
            {%- if hash_column is not none %}
            and retro_ledger.content_hash = {{ hash_column }}
            {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{% macro retro_is_derived(hash_column=none) -%}
    {%- if not retro_is_incremental() -%}
        false
    {%- elif hash_column is none -%}
        (retro_ledger.name is not null)
    {%- else -%}
        coalesce(retro_ledger.content_hash = {{ hash_column }}, false)
    {%- endif -%}
{%- endmacro %}


{% macro retro_is_new() -%}
    {%- if retro_is_incremental() -%}
        (retro_ledger.name is null)
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}


{#- SQL: must the declaration (name, hash) be derived over all history in this run?
    Pass qualified columns: the ledger's own columns are called name and content_hash.
    (A correlated subquery: on Citus prefer retro_ledger_join, which pushes down.) -#}
{% macro retro_rederive(name_column, hash_column) -%}
    {%- if retro_is_incremental() -%}
        not exists (
            select 1 from {{ retro_ledger_relation(this) }} as derived
            where derived.name = {{ name_column }} and derived.content_hash = {{ hash_column }}
        )
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}


{#- SQL for step 1: delete the rows of every declaration whose version differs from the ledger's
    (changed, new, removed). -#}
{% macro retro_forget_changed_versions(target, versions, version_column, hash_column='content_hash') -%}
    delete from {{ target }}
    where {{ version_column }} in (
        select coalesce(current_version.{{ version_column }}, derived.name)
        from {{ versions }} as current_version
        full join {{ retro_ledger_relation(target) }} as derived
            on derived.name = current_version.{{ version_column }}
        where derived.content_hash is distinct from current_version.{{ hash_column }}
    )
{%- endmacro %}


{#- SQL for steps 1 and 2: forget what this run recomputes. `keep_window` skips step 2: an
    `insert_missing` run keeps the window's rows and adds the missing ones. -#}
{% macro retro_forget(target, versions, version_column, hash_column, time_column, plan=none, keep_window=false) -%}
    {{ retro_forget_changed_versions(target, versions, version_column, hash_column) }}
    {%- if keep_window -%}
    {%- elif plan is none or retro_window() is none %};
    delete from {{ target }}
    where {{ retro_in_window(time_column) }}
    {%- else %};
    {#- Joined on the distribution column: on Citus each shard deletes its own rows. #}
    delete from {{ target }} as stored
    using {{ plan }} as planned
    where stored.anonymous_id = planned.anonymous_id
        and stored.{{ time_column }} >= planned.recompute_from
        and stored.{{ time_column }} <= planned.recompute_until
    {%- endif %}
{%- endmacro %}


{#- SQL for step 4. -#}
{% macro retro_record_versions(target, versions, version_column, hash_column) -%}
    {%- set ledger = retro_ledger_relation(target) -%}
    delete from {{ ledger }};
    insert into {{ ledger }} (name, content_hash, derived_at, invocation_id)
    select distinct {{ version_column }}, {{ hash_column }}, now(), '{{ invocation_id }}'
    from {{ versions }}
{%- endmacro %}


{#- The ending of a materialization that keeps a ledger: distributed_finish, then the ledger's
    statistics. The next run joins the ledger with the declarations, and without statistics
    PostgreSQL expects a handful of derived ones and plans a scan of the window per declaration.
    After the commit: on Citus the ledger is a reference table, whose coordinator placement the
    insert wrote locally, and an ANALYZE of all its placements in that transaction fails ("a
    local execution has accessed a placement"). -#}
{% macro retro_finish(target, post_hooks) -%}
    {%- set result = distributed_finish(target, post_hooks) -%}
    {%- call statement('analyze_ledger', auto_begin=False) -%}
        analyze {{ retro_ledger_relation(target) }}
    {%- endcall -%}
    {{- return(result) -}}
{%- endmacro %}


{% macro retro_create_ledger(target) -%}
    {%- set ledger = retro_ledger_relation(target) -%}
    drop table if exists {{ ledger }};
    create table {{ ledger }} (
        name          text        primary key,
        content_hash  text        not null,
        derived_at    timestamptz not null,
        invocation_id text        not null
    );
    select retrolytics.make_reference('{{ ledger.include(database=false) }}'::regclass)
{%- endmacro %}


{#- ref(model) when this invocation builds it too, else none: a model built per window (the
    selector and signature matches) holds an earlier run's window unless it is built now. -#}
{% macro ref_if_built_now(model) -%}
    {%- if 'model.' ~ project_name ~ '.' ~ model in selected_resources -%}
        {{- return(ref(model)) -}}
    {%- endif -%}
    {{- return(none) -}}
{%- endmacro %}
