{#-
    funnel_mart: the materialization of the funnel marts BI tools read (mart_funnel_conversion,
    mart_funnel_unit_steps). Created empty (with the model's `indexes`) and filled by the model's
    one INSERT ... SELECT; a reference table on Citus (every node can join it; it has no device
    column to colocate on).

    A windowed run (the mart exists, vars start/end given) first deletes the rows the model
    recomputes: those of every changed (funnel, entry day) of int_funnel_changed_days, as
    periods (funnel_mart_recomputed_periods: its day, week and month) or, with
    `replaced_grain='attempt'`, those of the changed attempts themselves
    (int_funnel_changed_attempts); and every row of a funnel whose version is not the current
    one (edited or removed funnels). Without a window the mart is rebuilt. A windowed run
    refuses to start unless int_funnel_changed_attempts (a table filled once per run) is built
    in the same invocation: an older fill would name the wrong attempts.
-#}
{% materialization funnel_mart, adapter='postgres' -%}
    {%- set target_relation = this.incorporate(type='table') -%}
    {%- set existing = load_cached_relation(this) -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if funnel_mart_incremental() %}
        {{ retro_require_plan('int_funnel_changed_attempts') }}
        {%- call statement('forget') -%}
            lock table {{ target_relation }} in exclusive mode;
            {%- set by_attempt = funnel_mart_grain() == 'attempt' %}
            {%- if by_attempt %}
            {#- A join, not EXISTS: each changed attempt then finds its rows by the mart's index
                (as a semi-join the subquery ran for every row of the mart). -#}
            delete from {{ target_relation }} as mart
            using {{ ref('int_funnel_changed_attempts') }} as changed
            where {{ funnel_changed_attempt('mart', 'changed') }};
            {%- endif %}
            delete from {{ target_relation }} as mart
            where
                {%- if not by_attempt %}
                (mart.funnel_name, mart.period, mart.period_start)
                    in ({{ funnel_mart_recomputed_periods() }})
                or
                {%- endif %}
                not exists (
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
        {%- do create_indexes(target_relation) -%}
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


{#- The mart's periods, named as date_trunc() names them. -#}
{% macro funnel_periods() -%}
    array['day', 'week', 'month']
{%- endmacro %}


{#- The first day of the period (SQL text naming day, week or month) holding `day` (a date):
    itself, its ISO week's Monday, its month's first. -#}
{% macro funnel_period_start(period, day) -%}
    date_trunc({{ period }}, ({{ day }})::timestamp)::date
{%- endmacro %}


{#- A subquery: the (funnel_name, period, period_start) groups this run recomputes, the day, week
    and month of every (funnel, day) whose facts changed (int_funnel_changed_days). -#}
{% macro funnel_mart_recomputed_periods() -%}
    select distinct changed.funnel_name, periods.period,
        {{ funnel_period_start('periods.period', 'changed.entry_day') }} as period_start
    from {{ ref('int_funnel_changed_days') }} as changed
    cross join unnest({{ funnel_periods() }}) as periods (period)
{%- endmacro %}


{#- Predicate: the row `rows` (funnel_name, entry_day, unit_id, attempt_number) is of an attempt
    that the row `changed` of int_funnel_changed_attempts names. The entry day first: the
    mart's index leads with (funnel_name, entry_day). -#}
{% macro funnel_changed_attempt(rows, changed) -%}
    {{ changed }}.funnel_name = {{ rows }}.funnel_name
    and {{ changed }}.entry_day = {{ rows }}.entry_day
    and {{ changed }}.unit_id = {{ rows }}.unit_id
    and {{ rows }}.attempt_number >= {{ changed }}.first_attempt
{%- endmacro %}


{#- A subquery: the funnels whose rows in the mart being built are of another version than the
    current one (edited, new), which a windowed run recomputes over all their days. -#}
{% macro funnel_mart_rebuilt_funnels() -%}
    select versions.funnel_name
    from {{ ref('int_funnel_versions') }} as versions
    where not exists (
        select 1 from {{ this }} as mart
        where mart.funnel_name = versions.funnel_name
            and mart.content_hash = versions.content_hash
    )
{%- endmacro %}


{#- How a windowed run of the mart being built replaces rows (its `replaced_grain` config):
    'period' (the periods of the changed days) or 'attempt' (the changed attempts' rows). -#}
{% macro funnel_mart_grain() -%}
    {{- return(config.get('replaced_grain', 'period')) -}}
{%- endmacro %}


{#- A subquery: the facts a funnel mart is built from. All of them, but in a windowed run those
    that `changed` names, and every fact of the funnels of `rebuilt`. By the mart's grain
    (funnel_mart_grain), `changed` holds ranges of entry times (funnel_name, entered_from,
    entered_until; read through the facts' (funnel_name, entered_at) index) or rows of
    int_funnel_changed_attempts (read through the facts' primary key). -#}
{% macro funnel_mart_facts_of(changed, rebuilt) -%}
    {%- if not funnel_mart_incremental() -%}
    select * from {{ ref('fct_funnel_entries') }}
    {%- else -%}
    select facts.*
    from {{ changed }} as changed
    inner join {{ ref('fct_funnel_entries') }} as facts
        on
        {%- if funnel_mart_grain() == 'attempt' %} {{ funnel_changed_attempt('facts', 'changed') }}
        {%- else %} facts.funnel_name = changed.funnel_name
        and facts.entered_at >= changed.entered_from
        and facts.entered_at < changed.entered_until
        {%- endif %}

    union all

    select facts.*
    from {{ ref('fct_funnel_entries') }} as facts
    where facts.funnel_name in (select funnel_name from {{ rebuilt }})
    {%- endif -%}
{%- endmacro %}
