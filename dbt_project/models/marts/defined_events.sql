{{
    config(
        materialized='distributed_incremental',
        time_column='occurred_at',
        version_column='definition_name',
        hash_column='content_hash',
        versions_model='int_event_definition_versions',
        indexes=[{'columns': ['occurred_at']}, {'columns': ['anonymous_id', 'occurred_at']}],
    )
}}
-- The second index serves per-device reads: fct_paths redoes a moved identity's devices whole.
-- depends_on: {{ ref('int_event_definition_versions') }}

-- Every CTE is inlined (used once, or NOT MATERIALIZED), so PostgreSQL and Citus see one query:
-- the whole INSERT ... SELECT runs on each shard of raw.events (conditions are a reference
-- table), never on the coordinator.

with

-- Definitions the table holds with their current hash: only this run's window is redone.
derived_conditions as (

    select compiled.*
    from {{ ref('stg_event_definitions') }} as compiled
    {{ retro_ledger_join('compiled.definition_name', 'compiled.content_hash') }}
    where {{ retro_is_derived() }}

),

-- New and changed definitions (all of them on a first build): derived over all history.
rederived_conditions as not materialized (

    select compiled.*
    from {{ ref('stg_event_definitions') }} as compiled
    {{ retro_ledger_join('compiled.definition_name', 'compiled.content_hash') }}
    where not {{ retro_is_derived() }}

),

-- The window is a constant on the events, so PostgreSQL skips the daily partitions outside it.
window_matches as (

    select c.definition_name, c.content_hash, e.*
    from derived_conditions as c
    inner join {{ ref('stg_events') }} as e
        on {{ retro_in_window('e.occurred_at') }}
        and {{ condition_matches('e', 'c') }}

),

-- The EXISTS names no outer column, so PostgreSQL checks it once, before the join: a daily run
-- with no new or changed definition reads none of history (without it, every partition).
history_matches as (

    select c.definition_name, c.content_hash, e.*
    from rederived_conditions as c
    inner join {{ ref('stg_events') }} as e
        on {{ condition_matches('e', 'c') }}
    where exists (select 1 from rederived_conditions)

),

matches as (

    select * from window_matches
    union all
    select * from history_matches

),

-- An event that meets several conditions of one definition is one defined event.
deduplicated as (

    select distinct on (definition_name, anonymous_id, event_id, occurred_at) *
    from matches

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
