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
{%- set window_from, window_until = retro_window_bounds() %}

with

conditions as (

    select
        *,
        count(*) over (partition by definition_name) as conditions_of_definition,
        {{ retro_rederive('definition_name', 'content_hash') }} as over_all_history

    from {{ ref('stg_event_definitions') }}

),

-- What each condition scans: this run's window, or all history for a definition that is new
-- or changed (macros/retroactive.sql decides).
scans as (

    select
        *,
        case when over_all_history then '-infinity'::timestamptz else {{ window_from }} end
            as scan_from,
        case when over_all_history then 'infinity'::timestamptz else {{ window_until }} end
            as scan_until

    from conditions

),

-- Each condition makes its own pass over the events: a lateral subquery with the condition
-- outside (`offset 0` keeps PostgreSQL from flattening it into a join it would turn around).
-- One condition's regexes are then applied to many rows in a row and stay in PostgreSQL's
-- 32-entry cache of compiled regexes, however many definitions there are. The bounds are
-- parameters of the pass, so PostgreSQL skips the daily partitions outside them.
matches as not materialized (

    select
        c.definition_name,
        c.content_hash,
        c.conditions_of_definition,
        e.*

    from scans as c
    cross join lateral (
        select * from {{ ref('stg_events') }} as events
        where events.occurred_at >= c.scan_from
            and events.occurred_at < c.scan_until
            and {{ condition_matches('events', 'c') }}
        offset 0
    ) as e

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
