{#-
    funnel_facts: the materialization of fct_funnel_entries.

    Like distributed_incremental (macros/retroactive.sql), the table is created EMPTY,
    distributed through the single Citus switch (on unit_id, colocated with raw.events) and filled
    with INSERT ... SELECT, and a ledger (`<table>__versions`) remembers the funnel versions it
    holds. What differs is what a windowed run recomputes: an attempt depends on the attempts
    before it (a unit enters again only after the previous attempt ended), so the run cannot just
    redo the window's rows. In one transaction, holding a lock on the table, it

      1. writes the plan `<table>__plan`: for each unit of an unchanged funnel with a step or
         exclusion event in the window [start - lookback_hours, end), the point to recompute
         from: its last attempt entered before the window start if that attempt ended at or after
         it (late events may change it), else the window start; for `unit: user`, every person
         whose devices' identity periods changed since the last run (`<table>__identities`),
         from the beginning;
      2. queues the entry days it is about to change (`<table>__changes`, read by the mart);
      3. deletes the rows of new, changed and removed funnel versions, and the planned units'
         attempts from their points on;
      4. inserts: funnels with a new version over all history, planned units from their points
         (one statement for device funnels, pushed down to the shards on Citus, one for user
         funnels: funnel_facts_query);
      5. queues the entry days it wrote, records the versions and the identity periods.

    Recomputing from an attempt's entry reproduces it exactly when nothing before it changed,
    which holds because late events arrive inside the lookback. Without vars start/end a run
    recomputes everything; the first run (or --full-refresh) builds everything.
-#}
{% materialization funnel_facts, adapter='postgres' -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing = load_cached_relation(this) -%}
    {%- set versions = ref(config.require('versions_model')) -%}
    {%- set incremental = funnel_facts_incremental() -%}
    {%- set planned = funnel_facts_planned() -%}
    {%- set side = funnel_side_tables(target_relation) -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- call statement('walk_function') -%}
        create schema if not exists {{ adapter.quote(generate_schema_name('intermediate', none)) }};
        {{ funnel_walk_function(funnel_walk_name()) }};
        {{ funnel_hold_values_function(funnel_hold_values_name()) }}
    {%- endcall -%}

    {%- if incremental %}
        {%- call statement('lock') -%}
            lock table {{ target_relation }} in share row exclusive mode
        {%- endcall -%}
        {%- if planned %}
            {%- call statement('plan') -%}
                {{ funnel_write_plan(target_relation, versions) }}
            {%- endcall -%}
            {%- call statement('forget') -%}
                {{ funnel_forget(target_relation, versions) }}
            {%- endcall -%}
        {%- else %}
            {%- call statement('forget_all') -%}
                insert into {{ side.changes }} (funnel_name, entry_day) values (null, null);
                delete from {{ target_relation }}
            {%- endcall -%}
        {%- endif %}
        {{ funnel_facts_insert(target_relation, sql) }}
        {%- if planned %}
            {%- call statement('queue_written') -%}
                {{ funnel_queue_written(target_relation, versions) }}
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
            select retrolytics.distribute('{{ target_relation.include(database=false) }}'::regclass, 'unit_id')
        {%- endcall -%}
        {%- call statement('create_ledger') -%}
            {{ retro_create_ledger(target_relation) }}
        {%- endcall -%}
        {%- call statement('create_side_tables') -%}
            {{ funnel_create_side_tables(side) }}
        {%- endcall -%}
        {#- Commit the empty, distributed tables before filling them: Citus refuses a parallel
            INSERT ... SELECT over shards created in the same transaction. Should the insert
            fail, the next run finds an empty ledger and derives every funnel again. -#}
        {{ adapter.commit() }}
        {{ funnel_facts_insert(target_relation, sql) }}
        {%- do create_indexes(target_relation) -%}
    {%- endif %}

    {%- call statement('record_versions') -%}
        {{ retro_record_versions(target_relation, versions, 'funnel_name', 'content_hash') }};
        delete from {{ side.identities }};
        insert into {{ side.identities }} (anonymous_id, person_id, valid_from, valid_until)
        select anonymous_id, person_id, valid_from, valid_until from {{ ref('int_device_persons') }}
    {%- endcall -%}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {%- do persist_docs(target_relation, model) -%}
    {{ adapter.commit() }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}
{%- endmaterialization %}


{#- Step 4, one statement per unit (see funnel_facts_query): the model's SQL is the device
    query, which Citus runs on the shards; the user query follows. -#}
{% macro funnel_facts_insert(target_relation, device_sql) -%}
    {%- call statement('main') -%}
        {{ distributed_insert(target_relation, device_sql) }}
    {%- endcall -%}
    {%- call statement('main_user_units') -%}
        {{ distributed_insert(target_relation, funnel_facts_query('user')) }}
    {%- endcall -%}
{%- endmacro %}


{% macro funnel_side_tables(relation) -%}
    {%- set tables = {} -%}
    {%- for suffix in ['plan', 'identities', 'changes'] -%}
        {%- do tables.update({suffix: relation.incorporate(
            path={'identifier': relation.identifier ~ '__' ~ suffix}, type='table')}) -%}
    {%- endfor -%}
    {{- return(tables) -}}
{%- endmacro %}


{% macro funnel_plan_relation(relation) -%}
    {{- return(funnel_side_tables(relation).plan) -}}
{%- endmacro %}


{#- Does this run add to existing facts (true) or build them from scratch (false)? -#}
{% macro funnel_facts_incremental() -%}
    {%- if not retro_is_incremental() -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- for side_table in funnel_side_tables(this).values() -%}
        {%- if adapter.get_relation(this.database, this.schema, side_table.identifier) is none -%}
            {{- return(false) -}}
        {%- endif -%}
    {%- endfor -%}
    {{- return(true) -}}
{%- endmacro %}


{#- Does this run follow a plan (incremental, with a window)? The model asks the same. -#}
{% macro funnel_facts_planned() -%}
    {{- return(funnel_facts_incremental() and retro_window() is not none) -}}
{%- endmacro %}


{#- Events that only match exclusions sort after every step at the same instant. -#}
{% macro funnel_sort_step(lowest_step) -%}
    coalesce({{ lowest_step }}, 99)
{%- endmacro %}


{#- The position of an event in its unit's stream, as a row value to compare with. -#}
{% macro funnel_stream_key(alias) -%}
    ({{ alias }}.occurred_at, {{ alias }}.sort_step, {{ alias }}.event_id, {{ alias }}.anonymous_id collate "C")
{%- endmacro %}


{#- An event column chosen by name (data from the seed), never by building SQL from it. A searched
    CASE: Citus mis-plans `case x when ...` on the shards (see defined_events). -#}
{% macro funnel_breakdown_field(field, events) -%}
    {%- set columns = {
        'type': events ~ '.type',
        'name': events ~ '.name',
        'page_url': events ~ '.page_url',
        'page_path': events ~ '.page_path',
        'page_title': events ~ '.page_title',
        'referrer': events ~ '.referrer',
        'target_text': events ~ '.target_text',
        'target_href': events ~ '.target_href',
        'utm_source': events ~ '.utm_source',
        'utm_medium': events ~ '.utm_medium',
        'utm_campaign': events ~ '.utm_campaign',
    } -%}
    case
    {%- for name, column in columns.items() %}
        when {{ field }} = '{{ name }}' then {{ column }}
    {%- endfor %}
    end
{%- endmacro %}


{% macro funnel_create_side_tables(side) -%}
    drop table if exists {{ side.plan }};
    create table {{ side.plan }} (
        funnel_name       text        not null,
        unit_id           text        not null,
        from_at           timestamptz not null,
        from_step         integer     not null,
        from_event_id     uuid        not null,
        from_anonymous_id text        not null,
        first_attempt     integer     not null,
        primary key (funnel_name, unit_id)
    );
    select retrolytics.distribute('{{ side.plan.include(database=false) }}'::regclass, 'unit_id');
    drop table if exists {{ side.identities }};
    create table {{ side.identities }} (
        anonymous_id text        not null,
        person_id    text        not null,
        valid_from   timestamptz not null,
        valid_until  timestamptz not null
    );
    select retrolytics.distribute('{{ side.identities.include(database=false) }}'::regclass);
    drop table if exists {{ side.changes }};
    -- Entry days whose facts changed, until the mart has recomputed them; (null, null) = all.
    create table {{ side.changes }} (
        funnel_name text,
        entry_day   date
    );
    select retrolytics.make_reference('{{ side.changes.include(database=false) }}'::regclass);
    insert into {{ side.changes }} (funnel_name, entry_day) values (null, null)
{%- endmacro %}


{#- SQL: funnel names whose rows go (new, changed and removed versions). -#}
{% macro funnel_changed_versions(target, versions) -%}
    select coalesce(current_version.funnel_name, derived.name)
    from {{ versions }} as current_version
    full join {{ retro_ledger_relation(target) }} as derived
        on derived.name = current_version.funnel_name
    where derived.content_hash is distinct from current_version.content_hash
{%- endmacro %}


{% macro funnel_write_plan(target, versions) -%}
    {%- set side = funnel_side_tables(target) -%}
    {%- set since = "'" ~ retro_window().since ~ "'::timestamptz" -%}
    {%- set nil = "'00000000-0000-0000-0000-000000000000'::uuid" -%}
    truncate {{ side.plan }};
    insert into {{ side.plan }}
        (funnel_name, unit_id, from_at, from_step, from_event_id, from_anonymous_id, first_attempt)
    with

    unchanged as (
        select funnels.funnel_name, funnels.unit
        from {{ ref('stg_funnels') }} as funnels
        inner join {{ versions }} as versions on versions.funnel_name = funnels.funnel_name
        inner join {{ retro_ledger_relation(target) }} as derived
            on derived.name = versions.funnel_name and derived.content_hash = versions.content_hash
    ),

    identities_now as (
        select anonymous_id, person_id, valid_from, valid_until
        from {{ ref('int_device_persons') }}
    ),

    identity_changes as (
        (select * from identities_now except all select * from {{ side.identities }})
        union all
        (select * from {{ side.identities }} except all select * from identities_now)
    ),

    -- Persons whose devices or periods changed: recomputed from the beginning.
    moved as (
        select unchanged.funnel_name, persons.unit_id
        from unchanged
        cross join (
            select person_id as unit_id from identity_changes
            union
            select 'device:' || anonymous_id from identity_changes
        ) as persons
        where unchanged.unit = 'user'
    ),

    touched as (
        select distinct step_events.funnel_name, step_events.unit_id
        from {{ ref('int_funnel_step_events') }} as step_events
        inner join unchanged on unchanged.funnel_name = step_events.funnel_name
        where {{ retro_in_window('step_events.occurred_at') }}
    ),

    last_before as (
        select distinct on (touched.funnel_name, touched.unit_id)
            touched.funnel_name,
            touched.unit_id,
            facts.entered_at,
            facts.entry_step,
            facts.entry_event_id,
            facts.anonymous_id,
            facts.attempt_number,
            facts.entered_at is not null and facts.ended_at >= {{ since }} as resumes
        from touched
        left join {{ target }} as facts
            on facts.funnel_name = touched.funnel_name
            and facts.unit_id = touched.unit_id
            and facts.entered_at < {{ since }}
        where not exists (
            select 1 from moved
            where moved.funnel_name = touched.funnel_name and moved.unit_id = touched.unit_id
        )
        order by touched.funnel_name, touched.unit_id, facts.attempt_number desc nulls last
    )

    select
        funnel_name,
        unit_id,
        case when resumes then entered_at else {{ since }} end,
        case when resumes then entry_step else 0 end,
        case when resumes then entry_event_id else {{ nil }} end,
        case when resumes then anonymous_id else '' end,
        case
            when entered_at is null then 1
            when resumes then attempt_number
            else attempt_number + 1
        end
    from last_before

    union all

    select funnel_name, unit_id, '-infinity'::timestamptz, 0, {{ nil }}, '', 1
    from moved
{%- endmacro %}


{#- Steps 2 and 3: queue the days about to change, then delete. -#}
{% macro funnel_forget(target, versions) -%}
    {%- set side = funnel_side_tables(target) -%}
    {%- set planned_rows -%}
        exists (
            select 1 from {{ side.plan }} as plan
            where plan.funnel_name = facts.funnel_name
                and plan.unit_id = facts.unit_id
                and (facts.entered_at, facts.entry_step, facts.entry_event_id,
                        facts.anonymous_id collate "C")
                    >= (plan.from_at, plan.from_step, plan.from_event_id,
                        plan.from_anonymous_id collate "C")
        )
    {%- endset -%}
    insert into {{ side.changes }} (funnel_name, entry_day)
    select distinct facts.funnel_name, facts.entry_day
    from {{ target }} as facts
    where facts.funnel_name in ({{ funnel_changed_versions(target, versions) }})
        or {{ planned_rows }};

    delete from {{ target }}
    where funnel_name in ({{ funnel_changed_versions(target, versions) }});

    delete from {{ target }} as facts
    where {{ planned_rows }}
{%- endmacro %}


{#- Step 5: queue the days just written. -#}
{% macro funnel_queue_written(target, versions) -%}
    {%- set side = funnel_side_tables(target) -%}
    insert into {{ side.changes }} (funnel_name, entry_day)
    select distinct funnel_name, entry_day
    from {{ target }}
    where invocation_id = '{{ invocation_id }}'
        and (
            funnel_name in ({{ funnel_changed_versions(target, versions) }})
            or entered_at >= (select min(from_at) from {{ side.plan }})
        )
{%- endmacro %}
