{{
    config(
        materialized='distributed_table',
        reference=true,
    )
}}
-- depends_on: {{ ref('int_selector_matches') }}
-- Which event signatures of this run's window meet which event definitions: one row per distinct
-- signature (macro event_signature: every column a condition tests) and definition version it
-- matches. Events with one signature meet the same conditions, and a window holds far fewer
-- signatures than events (the benchmark's day: 1,948 for 23,744 events, because pages, links
-- and buttons repeat). So each condition is tested once per signature, and defined_events joins
-- the window's events with these rows on their signature; a definition's several conditions
-- are one row here, so that join needs no deduplication (benchmarks/RESULTS.md, section 3).
-- Built in the same invocation as defined_events, which reads it only then, and only for a
-- window: a run over all history leaves it empty rather than list every signature there is.
--
-- A reference table on Citus, so defined_events still joins it on the shards; filling it reads
-- the window's distinct signatures from every shard and tests them in one place.
{#- The window's selector matches, when this invocation builds them for the same window;
    otherwise each selector's regex runs per signature. -#}
{%- set selector_matches = ref_if_built_now('int_selector_matches') %}

with

window_signatures as materialized (

    select distinct
        {{ event_signature('e') }} as signature,
        e.type,
        e.name,
        e.hierarchy,
        e.target_text,
        e.target_href,
        e.page_path,
        e.page_url,
        e.properties
    from {{ ref('stg_events') }} as e
    where {{ retro_in_window('e.occurred_at') if retro_window() is not none else 'false' }}

),

conditions as not materialized (

    select
        compiled.*,
        {{ condition_route_columns('compiled') }}
    from {{ ref('stg_event_definitions') }} as compiled

),

matches as (

    {{ routed_matches('conditions', 'true', selector_matches, events='window_signatures') }}

)

select distinct
    signature,
    definition_name,
    content_hash
from matches
