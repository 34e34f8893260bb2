{{
    config(
        materialized='distributed_table',
        reference=true,
    )
}}
-- Which element hierarchies of this run's window match which selectors: one row per distinct
-- hierarchy among the window's events and distinct selector (of a condition routed by its
-- selector's literal) that it matches. defined_events joins the window's events with these rows
-- on the hierarchy instead of running each condition's selector regex on each event: a
-- selector's regex costs PostgreSQL 100 to 300 µs a test (its automaton is rebuilt on every
-- call), and a window holds far fewer distinct hierarchies than events (page elements are
-- clicked again and again: 501 for 9268 events in the benchmark's window), so each regex runs
-- once per distinct hierarchy, not once per event and condition (benchmarks/RESULTS.md,
-- section 3). Built in the same invocation as defined_events, which refuses a window without it.
--
-- A reference table on Citus, so defined_events still joins it on the shards; filling it reads
-- the window's distinct hierarchies from every shard and tests them in one place.

with

window_hierarchies as materialized (

    select distinct e.hierarchy
    from {{ ref('stg_events') }} as e
    where {{ retro_in_window('e.occurred_at') }}
        and e.hierarchy is not null

),

selectors as (

    select distinct selector_literal, selector_regex
    from {{ ref('stg_event_definitions') }}
    where selector_literal is not null

)

-- Selector by selector (the lateral keeps them outer), so PostgreSQL's cache of 32 compiled
-- regexes compiles each once, not once per hierarchy.
select matched.hierarchy, s.selector_regex
from selectors as s
cross join lateral (
    select h.hierarchy
    from window_hierarchies as h
    where strpos(h.hierarchy, s.selector_literal) > 0
        and h.hierarchy ~ s.selector_regex
) as matched
