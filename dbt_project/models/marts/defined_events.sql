{{
    config(
        materialized='distributed_incremental',
        time_column='occurred_at',
        version_column='definition_name',
        hash_column='content_hash',
        versions_model='int_event_definition_versions',
        indexes=[{'columns': ['occurred_at']}],
    )
}}
-- depends_on: {{ ref('int_event_definition_versions') }}

with

conditions as (

    select
        compiled.*,
        count(*) over (partition by compiled.definition_name) as conditions_of_definition,
        {{ retro_rederive('compiled.definition_name', 'compiled.content_hash') }}
            as over_all_history

    from {{ ref('stg_event_definitions') }} as compiled

),

-- Each condition makes its own pass over the events: a lateral subquery with the condition
-- outside (`offset 0` keeps PostgreSQL from flattening it into a join it would turn around).
-- One condition's regexes are then applied to many rows in a row and stay in PostgreSQL's
-- 32-entry cache of compiled regexes, however many definitions there are (measured: 112
-- conditions over 100k events take 7 s this way and over 13 minutes as a plain join).
-- Unchanged definitions pass over this run's window (the partitions outside it are skipped);
-- new and changed ones over all history (macros/retroactive.sql decides which is which).
window_matches as not materialized (

    select c.definition_name, c.content_hash, c.conditions_of_definition, e.*
    from conditions as c
    cross join lateral (
        select * from {{ ref('stg_events') }} as events
        where {{ retro_in_window('events.occurred_at') }}
            and {{ condition_matches('events', 'c') }}
        offset 0
    ) as e
    where not c.over_all_history

),

history_matches as not materialized (

    select c.definition_name, c.content_hash, c.conditions_of_definition, e.*
    from conditions as c
    cross join lateral (
        select * from {{ ref('stg_events') }} as events
        where {{ condition_matches('events', 'c') }}
        offset 0
    ) as e
    where c.over_all_history

),

matches as not materialized (

    select * from window_matches
    union all
    select * from history_matches

),

-- An event that meets several conditions of one definition is one defined event; only
-- definitions with more than one condition need the (sorting) de-duplication.
defined as (

    select * from matches
    where conditions_of_definition = 1

    union all

    select distinct on (definition_name, anonymous_id, event_id, occurred_at) *
    from matches
    where conditions_of_definition > 1

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
        context #>> '{utm,source}' as utm_source,
        context #>> '{utm,medium}' as utm_medium,
        context #>> '{utm,campaign}' as utm_campaign,
        now() as derived_at,
        '{{ invocation_id }}'::text as invocation_id

    from defined

)

select * from final
