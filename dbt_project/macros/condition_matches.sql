{#-
    Does event `e` satisfy compiled condition `c` (a row of stg_event_definitions)?

    The one generic predicate behind every event definition: definitions are rows of data, their
    literals are compared as values and never become SQL. A NULL test in `c` means "no test".
    `retrolytics definitions show` renders the same tests, term for term, with the literals
    written out (retrolytics/language/events.py, condition_predicate); a test checks that both
    select the same events.

    One CASE, because PostgreSQL re-orders AND-ed quals by its cost estimates (it would run the
    selector's regex before the type test); a CASE is evaluated in the order written. So cheap
    tests come first, the event type and a literal the selector needs (strpos) reject most rows,
    and the selector's regex runs last and rarely. A test that yields NULL counts as failed.

    That order is what keeps PostgreSQL's cache of 32 compiled regexes useful: an event meets
    every condition in turn, but only the few whose type and literal fit get as far as a regex.
    Measured on 100k generated events with 112 conditions (56 distinct selector regexes): as a
    join without the ordering > 13 minutes (every row recompiled every regex), with it 20 s; a
    lateral pass per condition (one regex hot at a time) took 12 s but makes Citus pull all raw
    events to the coordinator, so defined_events joins. With the 28 shipped conditions: 1.3 s.

    `selector_tested`: the caller already knows that the hierarchy matches the selector's regex
    (int_selector_matches), so the regex is not run again.
-#}
{% macro condition_matches(e, c, selector_tested=false) -%}
case
    when ({{ c }}.event_types is null or {{ c }}.event_types ? {{ e }}.type) is not true then false
    when ({{ c }}.event_name is null or {{ e }}.name = {{ c }}.event_name) is not true then false
    when ({{ c }}.selector_literal is null or strpos({{ e }}.hierarchy, {{ c }}.selector_literal) > 0) is not true then false
    when {{ value_matches(e ~ '.target_text', c ~ '.text_op', c ~ '.text_value') }} is not true then false
    when {{ value_matches(e ~ '.target_href', c ~ '.href_op', c ~ '.href_value') }} is not true then false
    when {{ value_matches(e ~ '.page_path', c ~ '.path_op', c ~ '.path_value') }} is not true then false
    when {{ value_matches(e ~ '.page_url', c ~ '.url_op', c ~ '.url_value') }} is not true then false
    when ({{ c }}.properties is null or {{ e }}.properties @> {{ c }}.properties) is not true then false
    {%- if selector_tested %}
    else true
    {%- else %}
    else ({{ c }}.selector_regex is null or {{ e }}.hierarchy ~ {{ c }}.selector_regex) is true
    {%- endif %}
end
{%- endmacro %}


{#- One of equals / contains / starts_with / regex (a path `like` arrives compiled to regex).
    A searched CASE: Citus mis-deparses the simple `case op when ...` form (text = boolean). -#}
{% macro value_matches(column, op, value) -%}
({{ op }} is null or case
        when {{ op }} = 'equals' then {{ column }} = {{ value }}
        when {{ op }} = 'contains' then strpos({{ column }}, {{ value }}) > 0
        when {{ op }} = 'starts_with' then starts_with({{ column }}, {{ value }})
        when {{ op }} = 'regex' then {{ column }} ~ {{ value }}
    end)
{%- endmacro %}


{#-
    The (condition, event) pairs where the event meets the condition, for the conditions of CTE
    `conditions` (with the columns `route` and `hierarchy_like` of defined_events' `conditions`)
    and the events where `event_filter` holds. Each condition joins the events on its route (a
    literal of its selector, the exact path, a custom event's name, its types, or none) and
    condition_matches then decides.

    Without `selector_matches` (all history: new and changed definitions) each route is the one
    test an index of raw.events serves (ingestion/schema.py), so a new definition reads only the
    events that can match it, one index probe per condition.

    With `selector_matches` (a window: int_selector_matches, the hierarchies of the window's
    events and the selectors they match) every route is a hash join instead: a window's events
    are few, and hundreds of conditions probing an index each would read the same pages again
    and again (`|| ''` keeps PostgreSQL off the path and name indexes). A condition routed by
    its selector joins those rows on its regex and then the events on their hierarchy, so no
    selector regex runs per event.

    `events` replaces stg_events with another relation of the columns condition_matches tests
    (int_signature_matches passes the window's distinct event signatures).

    Every branch joins `e` with small reference tables only, so Citus still runs each on the
    shards.
-#}
{% macro routed_matches(conditions, event_filter, selector_matches=none, events=none) -%}
    {%- set hashed = selector_matches is not none -%}
    {#- route, the join probing an index, the join by hashing -#}
    {%- set branches = [
        ('selector', 'e.hierarchy like c.hierarchy_like', 'e.hierarchy = matched.hierarchy'),
        ('path', 'e.page_path = c.path_value', "e.page_path || '' = c.path_value"),
        ('name', 'e.name = c.event_name', "e.name || '' = c.event_name"),
        ('type', 'e.type = route.event_type', 'e.type = route.event_type'),
        ('any', 'true', 'true'),
    ] -%}
    {%- for route, probed, hashed_join in branches %}
    {#- The selector branch tests its column itself, not `route`: PostgreSQL estimates a null
        test from statistics but a CASE at 0.5 % of the rows, and expecting three conditions it
        would scan the events once per condition instead of probing the trigram index. -#}
    {%- set route_test = 'c.selector_literal is not null' if route == 'selector'
        else "c.route = '" ~ route ~ "'" %}
    {%- set by_matches = hashed and route == 'selector' %}
    {% if not loop.first %}union all{% endif %}
    select c.definition_name, c.content_hash, e.*
    from {{ conditions }} as c
    {%- if route == 'type' %}
    cross join lateral jsonb_array_elements_text(c.event_types) as route (event_type)
    {%- elif by_matches %}
    inner join {{ selector_matches }} as matched
        on matched.selector_regex = c.selector_regex
    {%- endif %}
    inner join {{ events or ref('stg_events') }} as e
        on {{ hashed_join if hashed else probed }}
        and {{ event_filter }}
    where {{ route_test }}
        and {{ condition_matches('e', 'c', selector_tested=by_matches) }}
    {%- endfor %}
{%- endmacro %}


{#- The route by which a compiled condition (a row of stg_event_definitions aliased `compiled`)
    finds its events, and its selector literal as a `like` pattern: the columns routed_matches
    reads besides the condition's own. -#}
{% macro condition_route_columns(compiled) -%}
    '%' || replace(replace(replace({{ compiled }}.selector_literal, '\', '\\'), '%', '\%'), '_', '\_')
        || '%' as hierarchy_like,
    case
        when {{ compiled }}.selector_literal is not null then 'selector'
        when {{ compiled }}.path_op = 'equals' then 'path'
        when {{ compiled }}.event_name is not null then 'name'
        when {{ compiled }}.event_types is not null then 'type'
        else 'any'
    end as route
{%- endmacro %}


{#- An event's signature: every column a condition tests (condition_matches), as one text. Events
    with the same signature meet the same conditions, and a window holds far fewer signatures
    than events (int_signature_matches). A record's text form tells NULL from '' and keeps each
    value whole, so two signatures are equal only when every tested column is. -#}
{% macro event_signature(e) -%}
    row({{ e }}.type, {{ e }}.name, {{ e }}.hierarchy, {{ e }}.target_text, {{ e }}.target_href,
        {{ e }}.page_path, {{ e }}.page_url, {{ e }}.properties)::text
{%- endmacro %}
