{{
    config(
        materialized='distributed_incremental',
        time_column='occurred_at',
        version_column='definition_name',
        hash_column='content_hash',
        versions_model='int_event_definition_versions',
        incremental_strategy='insert_missing',
        unique_key=['definition_name', 'occurred_at', 'anonymous_id', 'event_id'],
        indexes=[{'columns': ['occurred_at']}, {'columns': ['anonymous_id', 'occurred_at']}],
        pre_hook="set work_mem = '64MB'",
    )
}}
-- The second index serves per-device reads: fct_paths redoes a moved identity's devices whole.
-- depends_on: {{ ref('int_event_definition_versions') }}
-- depends_on: {{ ref('int_selector_matches') }}
-- depends_on: {{ ref('int_signature_matches') }}
{#- The window's signature (and selector) matches must be this run's, not an earlier run's with
    another window: read only when this invocation builds them, for a window. A run that selects
    defined_events alone (a backfill of it from the Dagster UI) tests each event instead. -#}
{%- set signature_matches = ref_if_built_now('int_signature_matches')
    if retro_window() is not none else none %}
{%- set selector_matches = ref_if_built_now('int_selector_matches') %}
{%- set event_key = 'definition_name, anonymous_id, event_id, occurred_at' %}
-- work_mem (pre_hook): the deduplication below sorts the matches found per event, 33 MB at 500
-- definitions over 10k events a day; in memory instead of on disk (benchmarks/RESULTS.md, 3).

-- Every CTE is inlined (used once, or NOT MATERIALIZED), so PostgreSQL and Citus see one query:
-- the whole INSERT ... SELECT runs on each shard of raw.events (conditions are a reference
-- table), never on the coordinator.

with

-- Each condition finds its events by the most selective test an index of raw.events serves
-- (ingestion/schema.py): a literal its selector needs (trigram index on the hierarchy), an exact
-- path, a custom event's name, its types; a condition with none of these reads every event.
conditions as not materialized (

    select
        compiled.*,
        {{ condition_route_columns('compiled') }}
    from {{ ref('stg_event_definitions') }} as compiled

),

-- Definitions the table holds with their current hash: only this run's window is redone.
derived_conditions as not materialized (

    select c.*
    from conditions as c
    {{ retro_ledger_join('c.definition_name') }}
    where {{ retro_is_derived('c.content_hash') }}

),

-- New and changed definitions (all of them on a first build): derived over all history.
rederived_conditions as not materialized (

    select c.*
    from conditions as c
    {{ retro_ledger_join('c.definition_name', 'c.content_hash') }}
    where {{ retro_is_new() }}

),

-- The window is a constant on the events, so PostgreSQL skips the daily partitions outside it.
-- Each window event takes the definitions its signature met (int_signature_matches, built for
-- the same window: one row per definition, so no deduplication). Without it, each event is
-- tested on its routes, and an event that meets several conditions of one definition is one
-- defined event.
window_matches as (
{%- if signature_matches is not none %}

    select matched.definition_name, matched.content_hash, e.*
    from {{ signature_matches }} as matched
    {{ retro_ledger_join('matched.definition_name') }}
    inner join {{ ref('stg_events') }} as e
        on {{ event_signature('e') }} = matched.signature
        and {{ retro_in_window('e.occurred_at') }}
    where {{ retro_is_derived('matched.content_hash') }}
{%- else %}

    select distinct on ({{ event_key }}) *
    from (
        {{ routed_matches(
            'derived_conditions', retro_in_window('e.occurred_at'), selector_matches
        ) }}
    ) as per_event
{%- endif %}

),

-- The EXISTS names no outer column, so PostgreSQL checks it once, before the join: a daily run
-- with no new or changed definition reads none of history (without it, every partition).
history_matches as (

    select distinct on ({{ event_key }}) *
    from (
        {{ routed_matches('rederived_conditions', 'exists (select 1 from rederived_conditions)') }}
    ) as per_event

),

deduplicated as (

    select * from window_matches
    union all
    select * from history_matches

),

final as (

    select
        event_id,
        anonymous_id,
        user_id,
        session_id,
        occurred_at,
        received_at,
        definition_name,
        content_hash,
        type,
        name,
        page_url,
        page_path,
        page_title,
        referrer,
        target_text,
        target_href,
        properties,
        utm_source,
        utm_medium,
        utm_campaign,
        now() as derived_at,
        '{{ invocation_id }}'::text as invocation_id

    from deduplicated

)

select * from final
